"""The send path every channel shares: claim, skip, deliver, finish, exactly once.

A send's row is claimed under its idempotency key before any provider is
touched, so a retried or replayed activity finds the row and does not send
again. A message that failed for good (a template error) stays failed for the
run that failed it; a run that `journeys ops reset` started (the data or the
code fixed since) claims it again, once: a sent message is never claimed again.

While an attempt may be talking to the provider it holds the row's lease
(`lease_owner`, `lease_until`: renewed every 2 s while the attempt lives, and
checked once more just before the provider is given the message). Another
attempt that finds the row still `sending` does not start until that lease has
run out, so a slow attempt that Temporal already gave up on cannot send in
parallel with its retry. Once the provider has accepted the message, marking
the row `sent` is retried in place (for up to two minutes, heartbeating, and
not interrupted by a cancellation) rather than failing the attempt, so a
PostgreSQL restart or a worker shutdown does not cause a second send either.

The residual window (README, "Reliability"): the provider accepted the
message, and the worker process died before the row said `sent`, or the
connection broke before the provider's answer came (the lease is kept; the
retry waits for it to run out), or PostgreSQL stayed away longer than the
in-place retries. The retry then sends again: at most one copy per send in
flight at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import NoReturn, cast, get_args

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.retries import keep_alive, persist, retry_later
from journeys import metrics
from journeys.definition.common import DeliveryErrorKind
from journeys.models import SendInput, SendResult
from journeys.store import caps as caps_store
from journeys.store import messages
from journeys.store.delivery import reject_message

log = structlog.get_logger(__name__)

# How stale the frequency caps a worker applies may be (set through the API).
CAPS_READ_SECONDS = 5.0
# An attempt renews its lease every RENEW_EVERY seconds; a lease that has not
# been renewed for LEASE seconds belongs to an attempt that is gone.
LEASE = timedelta(seconds=10)
RENEW_EVERY = 2.0

# How long the first accepted message of a batch waits for others to share its write:
# at 500 messages/s a write per message cost 8% of a bulk send's CPU; 10 ms adds a few
# messages to what a crash at that moment may send twice.
LINGER = 0.01

Failure = type[Exception] | tuple[type[Exception], ...]


def refused(exc: Exception) -> tuple[str, DeliveryErrorKind]:
    """A provider's refusal for good: the reason, and the delivery error it records. The
    error's `delivery_error` says which when the refusal tells (an SMTP refusal of the
    recipient's address is a hard bounce, `activities.smtp.refusal_kind`); else it is
    `rejected`."""
    kind = getattr(exc, "delivery_error", None)
    if kind not in get_args(DeliveryErrorKind):
        return str(exc), "rejected"
    return str(exc), cast(DeliveryErrorKind, kind)


class FrequencyCaps:
    """The frequency caps in force (`journeys.store.caps`), read at most every
    CAPS_READ_SECONDS: a send on a channel without a cap costs no statement more."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._caps: dict[str, caps_store.FrequencyCap] = {}
        self._read_at: float | None = None

    async def of(self, channel: str) -> caps_store.FrequencyCap | None:
        now = asyncio.get_running_loop().time()
        if self._read_at is None or now - self._read_at > CAPS_READ_SECONDS:
            self._caps = {c.channel: c for c in await caps_store.list_caps(self.pool)}
            self._read_at = now
        return self._caps.get(channel)


class LeaseLost(Exception):
    """The caller no longer holds the message's lease: another attempt may send it."""


class Send:
    """One attempt at one send, holding the row's lease once `begin` returns it."""

    def __init__(
        self, pool: asyncpg.Pool, input: SendInput, message_id: uuid.UUID, channel: str = "email"
    ) -> None:
        self.pool, self.input, self.message_id, self.channel = pool, input, message_id, channel
        self.owner = uuid.uuid4()
        self._valid_until = 0.0  # loop time; with a margin for the clocks' difference

    @classmethod
    async def begin(
        cls,
        pool: asyncpg.Pool,
        input: SendInput,
        *,
        channel: str,
        contact_id: uuid.UUID,
        recipient: str | None,
        skip: str | None,
        caps: FrequencyCaps | None = None,
    ) -> Send | SendResult:
        """Claim the send; the outcome instead when it was decided before or is a skip,
        or `deferred` when the channel's frequency cap (`caps`) holds a new send back."""
        send = cls(pool, input, uuid.uuid4(), channel)
        claim = _claim(input, channel, contact_id, recipient, skip)
        cap = None
        if caps is not None and skip is None and not input.transactional:
            cap = await caps.of(channel)
        if cap is None:
            [row] = await messages.claim_messages(
                pool, [claim], lease_owner=send.owner, lease=LEASE
            )
        else:
            # Counted and claimed under the contact's lock: two sends at once cannot both
            # take the last place. A retry of a claimed send is never held back.
            async with pool.acquire() as conn, conn.transaction():
                await caps_store.lock_contact(conn, cap, contact_id)
                if not await messages.message_exists(conn, input.idempotency_key):
                    until = await caps_store.held_until(conn, cap, contact_id)
                    if until is not None:
                        metrics.send(channel, "deferred")
                        return SendResult(
                            message_id="",
                            status="deferred",
                            reason=f"frequency cap: {cap.max_messages} {channel} per {cap.per}",
                            until=until,
                        )
                [row] = await messages.claim_messages(
                    conn, [claim], lease_owner=send.owner, lease=LEASE
                )
        send.message_id = row["id"]
        if row["status"] != "sending":
            if row["claimed"]:  # skipped now; otherwise decided (and counted) before
                metrics.send(channel, row["status"])
            return _outcome(row)
        if row["claimed"]:
            send._renewed()
        else:
            # Not while an earlier attempt may still be talking to the provider.
            await send._take_over(row["lease_owner"], row["lease_left"])
        if skip:
            # An earlier attempt claimed the key and stopped before the provider;
            # since then the contact unsubscribed or lost its address.
            return await send.skipped(skip)
        return send

    async def skipped(self, reason: str) -> SendResult:
        await messages.finish_message(self.pool, self.message_id, "skipped", reason)
        metrics.send(self.channel, "skipped")
        return SendResult(message_id=str(self.message_id), status="skipped", reason=reason)

    async def fail(self, reason: str) -> NoReturn:
        """The send cannot succeed (a template error): recorded, and no retry. Another
        run of the chain (a reset's) may claim it again (`messages.claim_messages`)."""
        await messages.finish_message(
            self.pool, self.message_id, "failed", reason, run_id=_this_run()
        )
        metrics.send(self.channel, "failed")
        raise ApplicationError(f"step '{self.input.step}': {reason}", non_retryable=True)

    def held(self) -> bool:
        """Whether this attempt still holds the lease, as far as it can tell."""
        return asyncio.get_running_loop().time() < self._valid_until

    async def deliver(
        self,
        call: Callable[[], Awaitable[str | None]],
        *,
        rejected: Failure,
        unknown: Failure,
        unsendable: Failure = (),
        subject: str | None = None,
        body: str | None = None,
        segments: int | None = None,
    ) -> SendResult:
        """Hand the message to the provider (`call` returns its id) and record the outcome.

        `rejected` errors are the provider's refusal for good (the send is skipped
        with that reason, and the delivery error `refused` names is recorded);
        `unknown` ones mean the provider may have the message; `unsendable` ones that
        no retry can send it (the send fails, as `fail`).
        """
        async with keep_alive(RENEW_EVERY, self._renew):
            try:
                provider_id = await call()
            except rejected as exc:
                refusal, kind = refused(exc)
                await persist(
                    lambda: reject_message(self.pool, self.message_id, refusal, kind),
                    what="mark rejected",
                )
                metrics.send(self.channel, "rejected")
                return SendResult(message_id=str(self.message_id), status="skipped", reason=refusal)
            except unsendable as exc:
                await self.fail(str(exc))
            except unknown as exc:
                # The provider may have it. The lease stays: the retry waits for it to
                # run out and then sends again (README, "Reliability").
                log.warning("send.outcome_unknown", message_id=str(self.message_id), error=str(exc))
                raise retry_later(f"the provider's answer was lost: {exc}") from None
            except LeaseLost as exc:
                raise retry_later(str(exc), delay=LEASE) from None
            except Exception:
                # Nothing was delivered: the next attempt need not wait for the lease.
                await self._release()
                raise
            await persist(
                lambda: messages.mark_messages_sent(
                    self.pool,
                    [messages.Sent(self.message_id, subject, provider_id, body, segments)],
                ),
                what="mark sent",
            )
        metrics.send(self.channel, "sent")
        log.info(
            "send.sent",
            message_id=str(self.message_id),
            journey=self.input.journey_key,
            step=self.input.step,
            participant=self.input.contact_id,
        )
        return SendResult(message_id=str(self.message_id), status="sent")

    def _renewed(self) -> None:
        margin = RENEW_EVERY
        self._valid_until = asyncio.get_running_loop().time() + LEASE.total_seconds() - margin

    async def _take_over(self, holder: uuid.UUID | None, left: timedelta | None) -> None:
        """Take the row over from an earlier attempt, once that attempt's lease is over."""
        if left is not None and left > timedelta(0):
            raise retry_later(
                "an earlier attempt of this send may still be talking to the provider",
                delay=left,
            )
        if not await messages.take_over_lease(
            self.pool, self.message_id, holder, self.owner, LEASE
        ):  # a concurrent retry took it first
            raise retry_later("another attempt of this send holds it", delay=LEASE)
        self._renewed()

    async def _renew(self) -> None:
        if await messages.renew_leases(self.pool, [self.message_id], self.owner, LEASE):
            self._renewed()

    async def _release(self) -> None:
        try:
            await messages.release_lease(self.pool, self.message_id, self.owner)
        except Exception:  # PostgreSQL is away: the lease runs out by itself
            pass


# Per send of a batch: the message id to deliver, the outcome decided before (or a
# skip), or None when an earlier attempt holds it.
Claimed = uuid.UUID | SendResult | ApplicationError | None


class SendBatch:
    """Many sends of one channel at once, under the rules of `Send`, for bulk runs.

    The sends are claimed in one statement under one lease owner, their leases
    renewed together, and the accepted ones recorded in group commits: a write
    takes everything accepted while the one before it ran. A page of mails
    costs the database a few statements instead of four or five per message (the
    recurring pair of the bench measured the difference). A message waits for
    its write before its `deliver` returns; the window in which a crash can send
    a copy again is `Send`'s (sends in flight) plus the messages waiting for the
    next write (`LINGER`).

    A batch logs one line, `send.batch`, with its counts by outcome; each message's
    `send.sent` is at debug level (at a thousand mails a second, a line per mail was
    3% of a bulk send's CPU and most of its log volume).

    Use as `async with SendBatch(pool) as batch:`; `claim` first.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.owner = uuid.uuid4()
        self.channel = ""  # the batch's, from `claim`
        self._valid_until = 0.0
        self._leased: set[uuid.UUID] = set()
        # Leased rows whose message was not handed to the provider (an outage, a page
        # stopped): released together when the batch ends, for the retry to take at once.
        self._unsent: set[uuid.UUID] = set()
        self._accepted: list[tuple[messages.Sent, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._alive: contextlib.AbstractAsyncContextManager[None] | None = None
        self._outcomes: Counter[str] = Counter()
        self._about: SendInput | None = None  # the first claimed: its journey and step

    async def __aenter__(self) -> SendBatch:
        self._alive = keep_alive(RENEW_EVERY, self._renew, heartbeat=False)
        await self._alive.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._writer is not None:
                await asyncio.wait([self._writer])
        finally:
            assert self._alive is not None
            await self._alive.__aexit__(None, None, None)
            if self._unsent:
                with contextlib.suppress(Exception):  # PostgreSQL away: the leases run out
                    await messages.release_leases(self.pool, list(self._unsent), self.owner)
            if self._about is not None:
                log.info(
                    "send.batch",
                    channel=self.channel,
                    journey=self._about.journey_key,
                    step=self._about.step,
                    workflow_id=self._about.workflow_id,
                    **self._outcomes,
                )

    def _counted(self, status: str) -> None:
        metrics.send(self.channel, status)
        self._outcomes[status] += 1

    async def claim(
        self, channel: str, sends: list[tuple[SendInput, uuid.UUID, str | None, str | None]]
    ) -> list[Claimed]:
        """Claim (input, contact id, recipient, skip) each; per send in order: the
        message id to deliver, the outcome decided before (or a skip), or None when
        an earlier attempt holds it (the caller goes through `Send`, which waits).

        A row an earlier attempt left `sending` without a live lease (it stopped
        before the provider, or its lease ran out) is taken over here, in one
        statement for the batch: a page retried after an outage goes the batch's way
        again, not a statement and a log line per message."""
        rows = await messages.claim_messages(
            self.pool,
            [
                _claim(input, channel, contact, recipient, skip)
                for input, contact, recipient, skip in sends
            ],
            lease_owner=self.owner,
            lease=LEASE,
        )
        self._renewed()
        self.channel = channel
        if sends and self._about is None:
            self._about = sends[0][0]
        # (One that is to be skipped now goes the one-by-one way, which records the skip.)
        idle: dict[uuid.UUID, uuid.UUID | None] = {
            row["id"]: row["lease_owner"]
            for (*_, skip), row in zip(sends, rows, strict=True)
            if row["status"] == "sending"
            and not row["claimed"]
            and skip is None
            and (row["lease_left"] is None or row["lease_left"] <= timedelta(0))
        }
        taken = await messages.take_over_leases(self.pool, list(idle.items()), self.owner, LEASE)
        out: list[Claimed] = []
        seen: set[uuid.UUID] = set()
        for row in rows:
            if row["id"] in seen:
                # The same key twice: only its first copy may deliver; this one is
                # told to take the one-by-one path, which finds the row leased.
                out.append(None)
                continue
            seen.add(row["id"])
            if row["status"] != "sending":
                if row["claimed"]:
                    self._counted(row["status"])
                else:
                    self._outcomes[f"{row['status']}_before"] += 1
                try:
                    out.append(_outcome(row))
                except ApplicationError as exc:
                    out.append(exc)
            elif row["claimed"] or row["id"] in taken:
                self._leased.add(row["id"])
                out.append(row["id"])
            else:
                out.append(None)
        return out

    def not_sent(self, message_id: uuid.UUID) -> None:
        """A claimed message the caller will not hand to the provider in this batch (its
        page stopped): its lease is released when the batch ends."""
        self._leased.discard(message_id)
        self._unsent.add(message_id)

    def holds(self, message_id: uuid.UUID) -> Callable[[], bool]:
        """Whether this batch still holds `message_id`'s lease, as far as it can tell:
        asked once more just before the provider is given the message."""
        return lambda: (
            message_id in self._leased and asyncio.get_running_loop().time() < self._valid_until
        )

    async def fail(self, message_id: uuid.UUID, input: SendInput, reason: str) -> ApplicationError:
        """The send cannot succeed: recorded; the error to report (not retried)."""
        self._leased.discard(message_id)
        await messages.finish_message(self.pool, message_id, "failed", reason, run_id=_this_run())
        self._counted("failed")
        return ApplicationError(f"step '{input.step}': {reason}", non_retryable=True)

    async def deliver(
        self,
        message_id: uuid.UUID,
        input: SendInput,
        call: Callable[[], Awaitable[str | None]],
        *,
        rejected: Failure,
        unknown: Failure,
        unsendable: Failure = (),
        subject: str | None = None,
    ) -> SendResult:
        """As `Send.deliver`, for one of the batch's messages."""
        try:
            provider_id = await call()
        except rejected as exc:
            refusal, kind = refused(exc)
            self._leased.discard(message_id)
            await persist(
                lambda: reject_message(self.pool, message_id, refusal, kind),
                what="mark rejected",
            )
            self._counted("rejected")
            return SendResult(message_id=str(message_id), status="skipped", reason=refusal)
        except unsendable as exc:
            raise await self.fail(message_id, input, str(exc)) from None
        except unknown as exc:
            log.warning("send.outcome_unknown", message_id=str(message_id), error=str(exc))
            raise retry_later(f"the provider's answer was lost: {exc}") from None
        except LeaseLost as exc:
            raise retry_later(str(exc), delay=LEASE) from None
        except Exception:
            self.not_sent(message_id)  # nothing delivered: released with the others
            raise
        # The lease is kept (and renewed) until the row says `sent`: a retry that took
        # the row over before that would send it again.
        written = asyncio.get_running_loop().create_future()
        self._accepted.append((messages.Sent(message_id, subject, provider_id), written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_accepted())
        # The write goes on when this caller is cancelled: the writer task owns it.
        await asyncio.shield(written)
        self._counted("sent")
        log.debug(
            "send.sent",
            message_id=str(message_id),
            journey=input.journey_key,
            step=input.step,
            participant=input.contact_id,
        )
        return SendResult(message_id=str(message_id), status="sent")

    async def _write_accepted(self) -> None:
        # Messages accepted within LINGER share the first write; those accepted while
        # a write runs share the next one.
        await asyncio.sleep(LINGER)
        while self._accepted:
            batch, self._accepted = self._accepted, []
            sent = [one for one, _ in batch]
            try:
                await persist(
                    functools.partial(messages.mark_messages_sent, self.pool, sent),
                    what="mark sent",
                )
            except BaseException as exc:
                for _, written in batch:
                    if not written.done():
                        written.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for one, written in batch:
                    self._leased.discard(one.message_id)
                    if not written.done():
                        written.set_result(None)

    def _renewed(self) -> None:
        self._valid_until = asyncio.get_running_loop().time() + LEASE.total_seconds() - RENEW_EVERY

    async def _renew(self) -> None:
        if self._leased:
            asked = set(self._leased)
            renewed = await messages.renew_leases(self.pool, list(asked), self.owner, LEASE)
            # A row whose lease another attempt took over (ours ran out while the
            # database was away) is no longer this batch's to send.
            self._leased -= asked - renewed
        self._renewed()


def _claim(
    input: SendInput, channel: str, contact_id: uuid.UUID, recipient: str | None, skip: str | None
) -> messages.Claim:
    return messages.Claim(
        idempotency_key=input.idempotency_key,
        channel=channel,
        workflow_id=input.workflow_id,
        journey_key=input.journey_key,
        version=input.version,
        step=input.step,
        contact_id=contact_id,
        recipient=recipient,
        skip=skip,
        follow_up_path=input.follow_up_path,
        record_id=uuid.UUID(input.record_id) if input.record_id else None,
        recurring_key=input.recurring_key,
        transactional=input.transactional,
        run_id=_this_run(),
    )


def _this_run() -> str | None:
    """The workflow run of this attempt. A message failed for good stays failed for
    retries of the run that failed it; a run that a reset started claims it again."""
    try:
        return activity.info().workflow_run_id
    except RuntimeError:  # not in an activity (a test calling the send path itself)
        return None


def _outcome(row: asyncpg.Record) -> SendResult:
    if row["status"] == "failed":  # by this run: a reset's run claims it again
        raise ApplicationError(
            f"message {row['id']} failed earlier: {row['error']}", non_retryable=True
        )
    return SendResult(
        message_id=str(row["id"]),
        status="sent" if row["status"] == "sent" else "skipped",
        reason=row["error"],
    )
