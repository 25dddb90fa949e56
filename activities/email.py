"""Sending e-mail: render, track, log, deliver over SMTP, exactly once in effect.

The message row is claimed under its idempotency key before SMTP is touched,
so a retried or replayed activity finds the row and does not send again.

While an attempt may be talking to the mail server it holds the row's lease
(`lease_owner`, `lease_until`: renewed every 2 s while the attempt lives, and
checked once more just before DATA). Another attempt that finds the row still
`sending` does not open an SMTP transaction until that lease has run out, so a
slow attempt that Temporal already gave up on cannot send in parallel with its
retry. Once the server has accepted the message, marking the row `sent` is
retried in place (for up to two minutes, heartbeating, and not interrupted by a
cancellation) rather than failing the attempt, so a PostgreSQL restart or a
worker shutdown does not cause a second send either.

The residual window (README, "Reliability"): the server received the end of
DATA, and the worker process died before the row said `sent`, or the
connection broke before the server's answer to DATA came (the lease is kept;
the retry waits for it to run out), or PostgreSQL stayed away longer than the
in-place retries. The retry then sends again: at most one copy per SMTP
transaction in flight at that moment, so at most `DEFAULT_CONNECTIONS` per
worker crash. The Message-ID is derived from the row, so copies can be
recognised.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.message import compose
from activities.retries import keep_alive, persist, quiet_outages, retry_later
from activities.smtp import LeaseLost, SmtpOutcomeUnknown, SmtpRejected, SmtpSender
from journeys.contacts import profile
from journeys.models import SendEmailInput, SendEmailResult
from journeys.settings import Settings
from journeys.templates import RenderError, render
from journeys.tracking import tracked_parts, unsubscribe_url

log = structlog.get_logger(__name__)

# An attempt renews its lease every RENEW_EVERY seconds; a lease that has not
# been renewed for LEASE seconds belongs to an attempt that is gone.
LEASE = timedelta(seconds=10)
RENEW_EVERY = 2.0
# Writes that record an outcome; a hung connection must not outlast the attempt.
WRITE_TIMEOUT = 10.0


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, sender: SmtpSender) -> None:
        self.pool = pool
        self.settings = settings
        self.sender = sender

    @activity.defn(name="send_email")
    @quiet_outages
    async def send_email(self, input: SendEmailInput) -> SendEmailResult:
        contact = await require_contact(self.pool, input.contact_id)
        skip = None
        if not contact.email:
            skip = "no e-mail address"
        elif contact.unsubscribed_at is not None:
            skip = "unsubscribed"
        lease = _Lease(self.pool, uuid.uuid4())
        # Claim the idempotency key; a retry or replay gets the row already there.
        row = await self.pool.fetchrow(
            """
            INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                  step, contact_id, recipient, status, error,
                                  lease_owner, lease_until)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                    CASE WHEN $10::text IS NULL THEN now() + $12::interval END)
            ON CONFLICT (idempotency_key) DO UPDATE SET status = messages.status
            RETURNING id, status, error, lease_owner, lease_until, (xmax = 0) AS claimed,
                      lease_until - now() AS lease_left
            """,
            uuid.uuid4(),
            input.idempotency_key,
            input.workflow_id,
            input.journey_key,
            input.version,
            input.step,
            contact.id,
            contact.email,
            "skipped" if skip else "sending",
            skip,
            lease.owner,
            LEASE,
        )
        assert row is not None
        message_id = lease.message_id = row["id"]
        if row["status"] != "sending":
            return _result(row)
        if row["claimed"]:
            lease.renewed()
        else:
            # Not while an earlier attempt may still be talking to the mail server.
            await lease.take_over(row["lease_owner"], row["lease_left"])
        if skip:
            # An earlier attempt claimed the key and stopped before SMTP; since
            # then the contact unsubscribed or lost its address.
            await self._finish(message_id, "skipped", skip)
            return SendEmailResult(message_id=str(message_id), status="skipped", reason=skip)
        fields = profile(contact)
        try:
            subject = render(input.subject, fields)
            html = render(input.html, fields, html=True)
            text = render(input.text, fields) if input.text is not None else None
        except RenderError as exc:
            await self._finish(message_id, "failed", str(exc))
            raise ApplicationError(
                f"step '{input.step}': template failed: {exc}", non_retryable=True
            ) from None
        base, secret = self.settings.public_url.rstrip("/"), self.settings.secret
        assert contact.email is not None  # contacts without one were skipped above
        message_id_header = f"<{message_id}@{urlsplit(base).hostname or 'journeys'}>"
        # Links in both parts are tracked; without an author's text part it is derived
        # from the HTML in the same parse.
        html, text = tracked_parts(html, text, base, secret.get_secret_value(), str(message_id))
        msg = compose(
            sender=input.sender or self.settings.mail_from,
            to=contact.email,
            subject=subject,
            text=text,
            html=html,
            headers={
                "Message-ID": message_id_header,
                "List-Unsubscribe": (
                    f"<{unsubscribe_url(base, secret.get_secret_value(), str(message_id))}>"
                ),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        async with keep_alive(RENEW_EVERY, lease.renew):
            try:
                await self.sender.send(msg, may_send=lease.held)
            except SmtpRejected as exc:
                refusal = str(exc)
                await persist(
                    lambda: self._finish(message_id, "rejected", refusal), what="mark rejected"
                )
                return SendEmailResult(message_id=str(message_id), status="skipped", reason=refusal)
            except SmtpOutcomeUnknown as exc:
                # The relay may have the message. The lease stays: the retry waits for
                # it to run out and then sends again (README, "Reliability").
                log.warning("email.outcome_unknown", message_id=str(message_id), error=str(exc))
                raise retry_later(f"the mail server's answer to DATA was lost: {exc}") from None
            except LeaseLost as exc:
                raise retry_later(str(exc), delay=LEASE) from None
            except Exception:
                # Nothing was delivered: the next attempt need not wait for the lease.
                await lease.release()
                raise
            await persist(
                lambda: self.pool.execute(
                    """UPDATE messages SET status = 'sent', subject = $2, provider_id = $3,
                                           sent_at = now(), lease_owner = NULL, lease_until = NULL
                       WHERE id = $1""",
                    message_id,
                    subject,
                    message_id_header,
                    timeout=WRITE_TIMEOUT,
                ),
                what="mark sent",
            )
        log.info(
            "email.sent", message_id=str(message_id), journey=input.journey_key, step=input.step
        )
        return SendEmailResult(message_id=str(message_id), status="sent")

    async def _finish(self, message_id: uuid.UUID, status: str, error: str) -> None:
        await self.pool.execute(
            """UPDATE messages SET status = $2, error = $3, lease_owner = NULL, lease_until = NULL
               WHERE id = $1""",
            message_id,
            status,
            error,
            timeout=WRITE_TIMEOUT,
        )


class _Lease:
    """This attempt's hold on its message row (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, owner: uuid.UUID) -> None:
        self.pool, self.owner = pool, owner
        self.message_id: uuid.UUID | None = None
        self._valid_until = 0.0  # loop time; with a margin for the clocks' difference

    def renewed(self) -> None:
        margin = RENEW_EVERY
        self._valid_until = asyncio.get_running_loop().time() + LEASE.total_seconds() - margin

    def held(self) -> bool:
        """Whether this attempt still holds the lease, as far as it can tell."""
        return asyncio.get_running_loop().time() < self._valid_until

    async def take_over(self, holder: uuid.UUID | None, left: timedelta | None) -> None:
        """Take the row over from an earlier attempt, once that attempt's lease is over."""
        if left is not None and left > timedelta(0):
            raise retry_later(
                "an earlier attempt of this send may still be talking to the mail server",
                delay=left,
            )
        taken = await self.pool.fetchval(
            """UPDATE messages SET lease_owner = $3, lease_until = now() + $4
               WHERE id = $1 AND status = 'sending' AND lease_owner IS NOT DISTINCT FROM $2
               RETURNING true""",
            self.message_id,
            holder,
            self.owner,
            LEASE,
        )
        if not taken:  # a concurrent retry took it first
            raise retry_later("another attempt of this send holds it", delay=LEASE)
        self.renewed()

    async def renew(self) -> None:
        if await self.pool.fetchval(
            """UPDATE messages SET lease_until = now() + $3
               WHERE id = $1 AND status = 'sending' AND lease_owner = $2 RETURNING true""",
            self.message_id,
            self.owner,
            LEASE,
        ):
            self.renewed()

    async def release(self) -> None:
        try:
            await self.pool.execute(
                """UPDATE messages SET lease_owner = NULL, lease_until = NULL
                   WHERE id = $1 AND status = 'sending' AND lease_owner = $2""",
                self.message_id,
                self.owner,
                timeout=WRITE_TIMEOUT,
            )
        except Exception:  # PostgreSQL is away: the lease runs out by itself
            pass


def _result(row: asyncpg.Record) -> SendEmailResult:
    if row["status"] == "failed":
        raise ApplicationError(
            f"message {row['id']} failed earlier: {row['error']}", non_retryable=True
        )
    return SendEmailResult(
        message_id=str(row["id"]),
        status="sent" if row["status"] == "sent" else "skipped",
        reason=row["error"],
    )
