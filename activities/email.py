"""Sending e-mail: render, track, deliver over SMTP, exactly once in effect.

The claim, the lease and recording the outcome are the send path every
channel shares (`activities/sends.py`); this module renders the mail and talks
to the SMTP server. The Message-ID is derived from the row, so copies sent
again after a worker crash (README, "Reliability") can be recognised; at most
`DEFAULT_CONNECTIONS` per worker crash.
"""

from __future__ import annotations

import uuid
from html import escape
from urllib.parse import urlsplit

import asyncpg
from temporalio import activity

from activities.contacts import require_contact
from activities.message import Attachment, compose
from activities.retries import quiet_outages
from activities.sends import Send
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected, SmtpSender
from journeys.contacts import profile
from journeys.models import NotifyInput, SendEmailInput, SendResult
from journeys.settings import Settings
from journeys.store.files import read_files
from journeys.store.records import get_record
from journeys.store.users import get_user
from journeys.templates import RenderError, render
from journeys.tracking import tracked_parts, unsubscribe_url


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, sender: SmtpSender) -> None:
        self.pool = pool
        self.settings = settings
        self.sender = sender

    @activity.defn(name="send_email")
    @quiet_outages
    async def send_email(self, input: SendEmailInput) -> SendResult:
        contact = await require_contact(self.pool, input.contact_id)
        skip = None
        if not contact.email:
            skip = "no e-mail address"
        elif contact.unsubscribed_at is not None:
            skip = "unsubscribed"
        elif contact.bounced:
            skip = "the address bounced or complained"
        send = await Send.begin(
            self.pool,
            input,
            channel="email",
            contact_id=contact.id,
            recipient=contact.email,
            skip=skip,
        )
        if isinstance(send, SendResult):
            return send
        fields = profile(contact)
        record = None
        if input.record_id is not None:
            found = await get_record(self.pool, uuid.UUID(input.record_id))
            record = found.model_dump() if found else None
            if found is None:
                await send.fail(f"record {input.record_id} no longer exists")
        try:
            subject = render(input.subject, fields, record=record)
            html = render(input.html, fields, html=True, record=record)
            text = render(input.text, fields, record=record) if input.text is not None else None
        except RenderError as exc:
            await send.fail(f"template failed: {exc}")
        base, secret = self.settings.public_url.rstrip("/"), self.settings.secret
        assert contact.email is not None  # contacts without one were skipped above
        message_id = str(send.message_id)
        message_id_header = f"<{message_id}@{urlsplit(base).hostname or 'journeys'}>"
        # Links in both parts are tracked; without an author's text part it is derived
        # from the HTML in the same parse.
        html, text = tracked_parts(html, text, base, secret.get_secret_value(), message_id)
        attachments = await self._attachments(send, input.attachments)
        msg = compose(
            sender=input.sender or self.settings.mail_from,
            to=contact.email,
            subject=subject,
            text=text,
            html=html,
            headers={
                "Message-ID": message_id_header,
                "List-Unsubscribe": (
                    f"<{unsubscribe_url(base, secret.get_secret_value(), message_id)}>"
                ),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            attachments=attachments,
        )

        async def over_smtp() -> str:
            await self.sender.send(msg, may_send=send.held)
            return message_id_header

        return await send.deliver(
            over_smtp, rejected=SmtpRejected, unknown=SmtpOutcomeUnknown, subject=subject
        )

    async def _attachments(self, send: Send, ids: list[str]) -> tuple[Attachment, ...]:
        if not ids:
            return ()
        found = await read_files(self.pool, ids)
        if len(found) < len(dict.fromkeys(ids)):
            missing = sorted(set(ids) - {str(meta.id) for meta, _ in found})
            await send.fail(f"attachment {', '.join(missing)} no longer exists")
        return tuple(Attachment(meta.filename, meta.content_type, data) for meta, data in found)

    @activity.defn(name="notify")
    @quiet_outages
    async def notify(self, input: NotifyInput) -> SendResult:
        """An internal mail about the participant: plain, untracked, no unsubscribe."""
        contact = await require_contact(self.pool, input.contact_id)
        address: str | None = input.to
        skip = None
        if "@" not in input.to:
            user = await get_user(self.pool, input.to)
            address = user.email if user else None
            skip = None if user else f"user '{input.to}' does not exist"
        send = await Send.begin(
            self.pool,
            input,
            channel="notification",
            contact_id=contact.id,
            recipient=address,
            skip=skip,
        )
        if isinstance(send, SendResult):
            return send
        assert address is not None
        fields = profile(contact)
        try:
            subject = render(input.subject, fields)
            body = render(input.body, fields)
        except RenderError as exc:
            await send.fail(f"template failed: {exc}")
        host = urlsplit(self.settings.public_url).hostname or "journeys"
        message_id_header = f"<{send.message_id}@{host}>"
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n\n"))
        msg = compose(
            sender=self.settings.mail_from,
            to=address,
            subject=subject,
            text=body,
            html=paragraphs.replace("\n", "<br>"),
            headers={"Message-ID": message_id_header, "Auto-Submitted": "auto-generated"},
        )

        async def over_smtp() -> str:
            await self.sender.send(msg, may_send=send.held)
            return message_id_header

        return await send.deliver(
            over_smtp, rejected=SmtpRejected, unknown=SmtpOutcomeUnknown, subject=subject
        )
