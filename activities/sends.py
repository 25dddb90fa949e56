"""The send path every channel shares: claim, skip, deliver, finish, exactly once.

A send's row is claimed under its idempotency key before any provider is
touched, so a retried or replayed activity finds the row and does not send
again.

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
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import NoReturn

import asyncpg
import structlog
from temporalio.exceptions import ApplicationError

from activities.retries import keep_alive, persist, retry_later
from journeys.models import SendInput, SendResult
from journeys.store import messages
from journeys.store.delivery import reject_message

log = structlog.get_logger(__name__)

# An attempt renews its lease every RENEW_EVERY seconds; a lease that has not
# been renewed for LEASE seconds belongs to an attempt that is gone.
LEASE = timedelta(seconds=10)
RENEW_EVERY = 2.0

Failure = type[Exception] | tuple[type[Exception], ...]


class LeaseLost(Exception):
    """The caller no longer holds the message's lease: another attempt may send it."""


class Send:
    """One attempt at one send, holding the row's lease once `begin` returns it."""

    def __init__(self, pool: asyncpg.Pool, input: SendInput, message_id: uuid.UUID) -> None:
        self.pool, self.input, self.message_id = pool, input, message_id
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
    ) -> Send | SendResult:
        """Claim the send; the outcome instead when it was decided before or is a skip."""
        send = cls(pool, input, uuid.uuid4())
        row = await messages.claim_message(
            pool,
            idempotency_key=input.idempotency_key,
            channel=channel,
            workflow_id=input.workflow_id,
            journey_key=input.journey_key,
            version=input.version,
            step=input.step,
            contact_id=contact_id,
            recipient=recipient,
            skip=skip,
            lease_owner=send.owner,
            lease=LEASE,
            follow_up_path=input.follow_up_path,
            record_id=uuid.UUID(input.record_id) if input.record_id else None,
            recurring_key=input.recurring_key,
        )
        send.message_id = row["id"]
        if row["status"] != "sending":
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
        return SendResult(message_id=str(self.message_id), status="skipped", reason=reason)

    async def fail(self, reason: str) -> NoReturn:
        """The send cannot succeed (a template error): recorded, and no retry."""
        await messages.finish_message(self.pool, self.message_id, "failed", reason)
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
        subject: str | None = None,
        body: str | None = None,
        segments: int | None = None,
    ) -> SendResult:
        """Hand the message to the provider (`call` returns its id) and record the outcome.

        `rejected` errors are the provider's refusal for good (the send is skipped
        with that reason); `unknown` ones mean the provider may have the message.
        """
        async with keep_alive(RENEW_EVERY, self._renew):
            try:
                provider_id = await call()
            except rejected as exc:
                refusal = str(exc)
                await persist(
                    lambda: reject_message(self.pool, self.message_id, refusal),
                    what="mark rejected",
                )
                return SendResult(message_id=str(self.message_id), status="skipped", reason=refusal)
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
                lambda: messages.mark_message_sent(
                    self.pool, self.message_id, subject, provider_id, body, segments
                ),
                what="mark sent",
            )
        log.info(
            "send.sent",
            message_id=str(self.message_id),
            journey=self.input.journey_key,
            step=self.input.step,
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
        if await messages.renew_lease(self.pool, self.message_id, self.owner, LEASE):
            self._renewed()

    async def _release(self) -> None:
        try:
            await messages.release_lease(self.pool, self.message_id, self.owner)
        except Exception:  # PostgreSQL is away: the lease runs out by itself
            pass


def _outcome(row: asyncpg.Record) -> SendResult:
    if row["status"] == "failed":
        raise ApplicationError(
            f"message {row['id']} failed earlier: {row['error']}", non_retryable=True
        )
    return SendResult(
        message_id=str(row["id"]),
        status="sent" if row["status"] == "sent" else "skipped",
        reason=row["error"],
    )
