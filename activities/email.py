"""Sending e-mail: render, track, deliver over SMTP, exactly once in effect.

The claim, the lease and recording the outcome are the send path every
channel shares (`activities/sends.py`); this module renders the mail and talks
to the SMTP server. The Message-ID is derived from the row, so copies sent
again after a worker crash (README, "Reliability") can be recognised; at most
`DEFAULT_CONNECTIONS` per worker crash.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from html import escape

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.message import Attachment, OutgoingMail, compose, list_id, sending_domain
from activities.relay import RelayGate
from activities.retries import quiet_outages, redacted
from activities.sends import Claimed, FrequencyCaps, Send, SendBatch
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected, SmtpSender, SmtpUnsendable
from journeys.contacts import Contact, profile
from journeys.models import NotifyInput, SendEmailInput, SendResult
from journeys.settings import Settings
from journeys.store.contacts import get_contacts
from journeys.store.files import read_files
from journeys.store.records import Record, get_records
from journeys.store.users import get_user
from journeys.templates import RenderError, render, render_html
from journeys.text import storable_problem
from journeys.tokens import bounce_address
from journeys.tracking import tracked_parts, unsubscribe_url

# Mails of one bulk page being rendered or sent at once (beyond the SMTP connections,
# so that rendering keeps ahead of the relay; bounded, so that a page of 500 is not
# composed, attachments and all, before the first is sent).
MAILS_IN_FLIGHT = 64


class Unsendable(Exception):
    """The mail cannot be made (a template error, its record or a file gone, an address
    that cannot go out): no retry can fix it."""


def _skip_reason(contact: Contact) -> str | None:
    if not contact.email:
        return "no e-mail address"
    if contact.unsubscribed_at is not None:
        return "unsubscribed"
    if contact.bounced:
        return "the address bounced or complained"
    return None


class EmailActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, sender: SmtpSender) -> None:
        self.pool = pool
        self.settings = settings
        self.sender = sender
        self.caps = FrequencyCaps(pool)

    @activity.defn(name="send_email")
    @quiet_outages
    async def send_email(self, input: SendEmailInput) -> SendResult:
        return await self._send_one(input)

    async def _send_one(self, input: SendEmailInput) -> SendResult:
        """One mail, claimed on its own; an outage is raised (the activity logs it)."""
        contact = await require_contact(self.pool, input.contact_id)
        send = await Send.begin(
            self.pool,
            input,
            channel="email",
            contact_id=contact.id,
            recipient=contact.email,
            skip=_skip_reason(contact),
            caps=self.caps,
        )
        if isinstance(send, SendResult):
            return send
        records = await get_records(
            self.pool, [uuid.UUID(input.record_id)] if input.record_id else []
        )
        try:
            mail, subject, message_id_header = await self._mail(
                input, contact, records, send.message_id
            )
        except Unsendable as exc:
            await send.fail(str(exc))

        async def over_smtp() -> str:
            await self.sender.send(mail, may_send=send.held)
            return message_id_header

        return await send.deliver(
            over_smtp,
            rejected=SmtpRejected,
            unknown=SmtpOutcomeUnknown,
            unsendable=SmtpUnsendable,
            subject=subject,
        )

    def relay_gate(self) -> RelayGate:
        """A gate for the pages of one bulk attempt (`activities.relay`)."""
        return RelayGate(self.settings.smtp_connections)

    async def send_emails(
        self,
        inputs: list[SendEmailInput],
        *,
        gate: RelayGate | None = None,
        on_result: Callable[[SendEmailInput, SendResult | BaseException], None] | None = None,
    ) -> list[SendResult | BaseException]:
        """`send_email` for many mails at once (a page of a bulk run), in a few
        statements (`SendBatch`); per mail in order its result or its error. A key given
        twice is sent once, and both copies get its result.

        The transactions go through `gate` (one for the attempt when not given): once
        the relay said it is unavailable, the mails not handed to it yet stop with
        `RelayDown`, unsent, and the page is retried whole. `on_result` hears each
        mail's result (once per key) as soon as it is known: the progress of a bulk
        operation counts what is done as it happens."""
        gate = gate or self.relay_gate()
        unique = list({i.idempotency_key: i for i in inputs}.values())
        contacts = await get_contacts(self.pool, [uuid.UUID(i.contact_id) for i in unique])
        records = await get_records(
            self.pool, list({uuid.UUID(i.record_id) for i in unique if i.record_id})
        )
        # Mails being made or sent at once: the page's others wait their turn unrendered.
        in_flight = asyncio.Semaphore(MAILS_IN_FLIGHT)
        async with SendBatch(self.pool) as batch:
            known = [(i, contacts.get(uuid.UUID(i.contact_id))) for i in unique]
            claimed = await batch.claim(
                "email",
                [(i, c.id, c.email, _skip_reason(c)) for i, c in known if c is not None],
            )
            claims = iter(claimed)
            work = [(i, c, next(claims) if c is not None else None) for i, c in known]

            async def one(
                input: SendEmailInput, contact: Contact | None, claim: Claimed
            ) -> SendResult:
                if contact is None:
                    raise ApplicationError(
                        f"contact {input.contact_id} does not exist", non_retryable=True
                    )
                if isinstance(claim, ApplicationError):
                    raise claim
                if isinstance(claim, SendResult):
                    return claim
                if claim is None:  # an earlier attempt holds it: the one-by-one path waits
                    gate.check()
                    return await self._send_one(input)
                async with in_flight:
                    if gate.down is not None:  # the page stopped: not even rendered
                        batch.not_sent(claim)
                        gate.check()
                    try:
                        mail, subject, message_id_header = await self._mail(
                            input, contact, records, claim
                        )
                    except Unsendable as exc:
                        raise await batch.fail(claim, input, str(exc)) from None

                    async def over_smtp() -> str:
                        await gate.send(lambda: self.sender.send(mail, may_send=batch.holds(claim)))
                        return message_id_header

                    return await batch.deliver(
                        claim,
                        input,
                        over_smtp,
                        rejected=SmtpRejected,
                        unknown=SmtpOutcomeUnknown,
                        unsendable=SmtpUnsendable,
                        subject=subject,
                    )

            async def heard(
                input: SendEmailInput, contact: Contact | None, claim: Claimed
            ) -> SendResult:
                try:
                    result = await one(input, contact, claim)
                except Exception as exc:
                    if on_result is not None:
                        on_result(input, exc)
                    raise
                if on_result is not None:
                    on_result(input, result)
                return result

            results = await asyncio.gather(*(heard(*w) for w in work), return_exceptions=True)
        by_key = {i.idempotency_key: r for i, r in zip(unique, results, strict=True)}
        return [by_key[i.idempotency_key] for i in inputs]

    async def _mail(
        self,
        input: SendEmailInput,
        contact: Contact,
        records: dict[uuid.UUID, Record],
        message_id: uuid.UUID,
    ) -> tuple[OutgoingMail, str, str]:
        """The mail to send, its subject and its Message-ID header."""
        record = None
        if input.record_id is not None:
            found = records.get(uuid.UUID(input.record_id))
            if found is None:
                raise Unsendable(f"record {input.record_id} no longer exists")
            record = found.model_dump()
        fields = profile(contact)
        try:
            subject = render(input.subject, fields, record=record)
            html, skeleton = render_html(input.html, fields, record=record)
            text = render(input.text, fields, record=record) if input.text is not None else None
        except RenderError as exc:
            raise Unsendable(f"template failed: {exc}") from None
        # What PostgreSQL cannot store (a NUL, a lone surrogate from a field) would be
        # sent and then never recorded as sent: a retry would send it again.
        if problem := storable_problem({"subject": subject, "html": html, "text": text}):
            raise Unsendable(f"the rendered mail cannot be stored: {problem}")
        base, secret = self.settings.public_url.rstrip("/"), self.settings.secret
        assert contact.email is not None  # contacts without one are skipped
        try:
            domain = sending_domain(self.settings.mail_from)
        except ValueError as exc:
            raise Unsendable(f"JOURNEYS_MAIL_FROM: {exc}") from None
        message_id_header = f"<{message_id}@{domain}>"
        # Links in both parts are tracked; without an author's text part it is derived
        # from the HTML in the same parse.
        html, text = tracked_parts(
            html, text, base, secret.get_secret_value(), message_id, skeleton=skeleton
        )
        attachments = await self._attachments(input.attachments)
        try:
            mail = compose(
                sender=input.sender or self.settings.mail_from,
                # Bounces come back to the product's address, whoever the mail is from.
                return_path=self.settings.mail_from,
                to=contact.email,
                subject=subject,
                text=text,
                html=html,
                headers={
                    "Message-ID": message_id_header,
                    # Beside List-Unsubscribe (SpamAssassin's LIST_PARTIAL_SHORT_MSG
                    # scores one without the other): the journey or recurring send.
                    "List-Id": list_id(input.recurring_key or input.journey_key, domain),
                    "List-Unsubscribe": (
                        f"<{unsubscribe_url(base, secret.get_secret_value(), message_id)}>"
                    ),
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                attachments=attachments,
            )
        except ValueError as exc:  # an address that cannot go out
            raise Unsendable(redacted(str(exc))) from None
        if self.settings.bounce_domain:
            # VERP: DSNs and complaints come back to an address of this message's own,
            # signed, so that `journeys bounces serve` knows which message they are about.
            mail = replace(
                mail,
                envelope_from=bounce_address(
                    message_id, secret.get_secret_value(), self.settings.bounce_domain
                ),
            )
        return mail, subject, message_id_header

    async def _attachments(self, ids: list[str]) -> tuple[Attachment, ...]:
        if not ids:
            return ()
        found = await read_files(self.pool, ids)
        if len(found) < len(dict.fromkeys(ids)):
            missing = sorted(set(ids) - {str(meta.id) for meta, _ in found})
            raise Unsendable(f"attachment {', '.join(missing)} no longer exists")
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
        paragraphs = "".join(f"<p>{escape(p)}</p>" for p in body.split("\n\n"))
        try:
            message_id_header = f"<{send.message_id}@{sending_domain(self.settings.mail_from)}>"
            msg = compose(
                sender=self.settings.mail_from,
                to=address,
                subject=subject,
                text=body,
                html=paragraphs.replace("\n", "<br>"),
                headers={"Message-ID": message_id_header, "Auto-Submitted": "auto-generated"},
            )
        except ValueError as exc:  # an address that cannot go out
            await send.fail(redacted(str(exc)))

        async def over_smtp() -> str:
            await self.sender.send(msg, may_send=send.held)
            return message_id_header

        return await send.deliver(
            over_smtp,
            rejected=SmtpRejected,
            unknown=SmtpOutcomeUnknown,
            unsendable=SmtpUnsendable,
            subject=subject,
        )
