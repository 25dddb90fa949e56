"""Sending e-mail: render, track, log, deliver over SMTP, exactly once in effect.

The message row is claimed under its idempotency key before SMTP is touched,
so a retried or replayed activity finds the row and does not send again. Only
a crash between the SMTP server accepting the message and the row being marked
`sent` can repeat a send; the Message-ID is derived from the row so receivers
can still tell the copies apart.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import asyncpg
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.message import compose
from activities.smtp import SmtpRejected, SmtpSender
from journeys.contacts import profile
from journeys.models import SendEmailInput, SendEmailResult
from journeys.settings import Settings
from journeys.templates import RenderError, html_to_text, render
from journeys.tracking import add_tracking, unsubscribe_url

log = structlog.get_logger(__name__)


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, sender: SmtpSender) -> None:
        self.pool = pool
        self.settings = settings
        self.sender = sender

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendEmailResult:
        contact = await require_contact(self.pool, input.contact_id)
        skip = None
        if not contact.email:
            skip = "no e-mail address"
        elif contact.unsubscribed_at is not None:
            skip = "unsubscribed"
        # Claim the idempotency key; a retry or replay gets the row already there.
        row = await self.pool.fetchrow(
            """
            INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                  step, contact_id, recipient, status, error)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            ON CONFLICT (idempotency_key) DO UPDATE SET status = messages.status
            RETURNING id, status, error
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
        )
        assert row is not None
        message_id = row["id"]
        if row["status"] == "sending" and skip:
            # An earlier attempt claimed the key and stopped before SMTP; since
            # then the contact unsubscribed or lost its address.
            await self._finish(message_id, "skipped", skip)
            return SendEmailResult(message_id=str(message_id), status="skipped", reason=skip)
        if row["status"] != "sending":
            return _result(row)
        fields = profile(contact)
        try:
            subject = render(input.subject, fields)
            html = render(input.html, fields, html=True)
            text = render(input.text, fields) if input.text is not None else html_to_text(html)
        except RenderError as exc:
            await self._finish(message_id, "failed", str(exc))
            raise ApplicationError(
                f"step '{input.step}': template failed: {exc}", non_retryable=True
            ) from None
        base, secret = self.settings.public_url.rstrip("/"), self.settings.secret
        assert contact.email is not None  # contacts without one were skipped above
        message_id_header = f"<{message_id}@{urlsplit(base).hostname or 'journeys'}>"
        msg = compose(
            sender=input.sender or self.settings.mail_from,
            to=contact.email,
            subject=subject,
            text=text,
            html=add_tracking(html, base, secret, str(message_id)),
            headers={
                "Message-ID": message_id_header,
                "List-Unsubscribe": f"<{unsubscribe_url(base, secret, str(message_id))}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        try:
            await self.sender.send(msg)
        except SmtpRejected as exc:
            await self._finish(message_id, "rejected", str(exc))
            return SendEmailResult(message_id=str(message_id), status="skipped", reason=str(exc))
        await self.pool.execute(
            """UPDATE messages SET status = 'sent', subject = $2, provider_id = $3, sent_at = now()
               WHERE id = $1""",
            message_id,
            subject,
            message_id_header,
        )
        log.info(
            "email.sent", message_id=str(message_id), journey=input.journey_key, step=input.step
        )
        return SendEmailResult(message_id=str(message_id), status="sent")

    async def _finish(self, message_id: uuid.UUID, status: str, error: str) -> None:
        await self.pool.execute(
            "UPDATE messages SET status = $2, error = $3 WHERE id = $1", message_id, status, error
        )


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
