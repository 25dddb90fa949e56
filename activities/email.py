"""Sending e-mail: render, track, deliver over SMTP, exactly once in effect.

The claim, the lease and recording the outcome are the send path every
channel shares (`activities/sends.py`); this module renders the mail and talks
to the SMTP server. The Message-ID is derived from the row, so copies sent
again after a worker crash (README, "Reliability") can be recognised; at most
`DEFAULT_CONNECTIONS` per worker crash.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
from temporalio import activity

from activities.contacts import require_contact
from activities.message import compose
from activities.retries import quiet_outages
from activities.sends import Send
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected, SmtpSender
from journeys.contacts import profile
from journeys.models import SendEmailInput, SendResult
from journeys.settings import Settings
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
        try:
            subject = render(input.subject, fields)
            html = render(input.html, fields, html=True)
            text = render(input.text, fields) if input.text is not None else None
        except RenderError as exc:
            await send.fail(f"template failed: {exc}")
        base, secret = self.settings.public_url.rstrip("/"), self.settings.secret
        assert contact.email is not None  # contacts without one were skipped above
        message_id = str(send.message_id)
        message_id_header = f"<{message_id}@{urlsplit(base).hostname or 'journeys'}>"
        # Links in both parts are tracked; without an author's text part it is derived
        # from the HTML in the same parse.
        html, text = tracked_parts(html, text, base, secret.get_secret_value(), message_id)
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
        )

        async def over_smtp() -> str:
            await self.sender.send(msg, may_send=send.held)
            return message_id_header

        return await send.deliver(
            over_smtp, rejected=SmtpRejected, unknown=SmtpOutcomeUnknown, subject=subject
        )
