"""SMTP delivery against a real aiosmtpd server: connections are reused (a refusal ends
its transaction, not the connection), a permanent refusal is recorded (a refused
recipient as a hard bounce) instead of being retried for ever, addresses go out as
IDNA and SMTPUTF8 where they need it, and the headers name the sending domain."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.message import OutgoingMail, compose
from activities.sends import LeaseLost
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected, SmtpSender, SmtpUnsendable
from journeys.contacts import ContactIn
from journeys.models import SendEmailInput
from journeys.store.contacts import upsert_contact
from tests.conftest import Stack
from tests.test_temporal_connection import _certificate, _key, _write_cert, _write_key


class PickyRelay:
    """Refuses recipients at refused.example, counts connections and messages."""

    def __init__(self) -> None:
        self.connections = 0
        self.received: list[str] = []

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 queued"


class HangUpAfterData(PickyRelay):
    """From the second message on, takes the message and then drops the connection
    instead of answering 250: the client cannot know whether it was delivered."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        if len(self.received) > 1:
            assert server.transport is not None
            server.transport.close()
        return "250 queued"


class Silent(PickyRelay):
    """Stops answering at one command (`at`: MAIL or DATA), as a stuck relay does."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.at == "MAIL":
            await asyncio.sleep(60)
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.extend(envelope.rcpt_tos)
        if self.at == "DATA":
            await asyncio.sleep(60)
        return "250 queued"


@pytest.fixture
async def relay() -> AsyncIterator[tuple[PickyRelay, int]]:
    handler = PickyRelay()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    yield handler, server.sockets[0].getsockname()[1]
    server.close()


def message(to: str) -> OutgoingMail:
    return compose(
        sender="a@example.com", to=to, subject="hi", text="hi", html="<p>hi</p>", headers={}
    )


async def test_connections_are_reused(relay: tuple[PickyRelay, int]) -> None:
    handler, port = relay
    sender = SmtpSender(f"smtp://127.0.0.1:{port}", connections=2)
    for i in range(6):
        await sender.send(message(f"r{i}@example.com"))
    await asyncio.gather(*(sender.send(message(f"p{i}@example.com")) for i in range(6)))
    await sender.close()
    assert len(handler.received) == 12
    assert handler.connections <= 2


async def test_a_refused_recipient_is_rejected_not_retried(
    relay: tuple[PickyRelay, int], stack: Stack
) -> None:
    handler, port = relay
    sender = SmtpSender(f"smtp://127.0.0.1:{port}")
    with pytest.raises(SmtpRejected, match="550"):
        await sender.send(message("nobody@refused.example"))

    # An address of its own: a refusal at RCPT suppresses it in the whole database.
    address = f"nobody-{uuid.uuid4().hex[:8]}@refused.example"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=address))
    activities = EmailActivities(stack.pool, stack.settings, sender)
    result = await ActivityEnvironment().run(
        activities.send_email, send_input(contact.id, "refused")
    )
    reason = "rejected by the mail server at RCPT: 550 5.1.1 no such mailbox"
    assert result.status == "skipped" and result.reason == reason
    row = await stack.pool.fetchrow(
        """SELECT m.status, m.error, e.data FROM messages m
           JOIN message_events e ON e.message_id = m.id AND e.kind = 'delivery_error'
           WHERE m.id = $1::uuid""",
        result.message_id,
    )
    assert row is not None
    # A recipient refused for good is a hard bounce: the error keeps the relay's enhanced
    # code and text, and the address is suppressed as a hard-bounce report would.
    assert (row["status"], row["error"]) == ("rejected", reason)
    assert row["data"] == {"kind": "hard_bounce", "detail": reason, "source": "send"}
    assert address not in reason
    assert (
        await stack.pool.fetchval(
            "SELECT reason FROM suppressed_addresses WHERE address = $1", address
        )
        == "hard_bounce"
    )
    again = await ActivityEnvironment().run(activities.send_email, send_input(contact.id, "again"))
    assert (again.status, again.reason) == ("skipped", "the address bounced or complained")
    await sender.close()
    assert handler.received == []
    assert handler.connections == 1  # the refusal ended its transaction, not the connection


def send_input(contact_id: uuid.UUID, prefix: str, **fields: Any) -> SendEmailInput:
    return SendEmailInput(
        **{
            "idempotency_key": f"{prefix}-{uuid.uuid4()}",
            "workflow_id": f"journey/{prefix}/x",
            "journey_key": prefix,
            "version": 1,
            "contact_id": str(contact_id),
            "step": "mail1",
            "subject": "s",
            "html": "<p>h</p>",
            **fields,
        }
    )


async def test_a_connection_lost_during_data_is_not_followed_by_a_second_transaction() -> None:
    handler = HangUpAfterData()
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = SmtpSender(f"smtp://127.0.0.1:{port}", connections=1)
        await sender.send(message("first@example.com"))
        # On the reused connection the relay hangs up after DATA: the send fails
        # (its retry waits for the activity's next attempt) and is not repeated here.
        with pytest.raises(SmtpOutcomeUnknown):
            await sender.send(message("once@example.com"))
        await asyncio.sleep(0.2)
        assert handler.received == ["first@example.com", "once@example.com"]
    finally:
        server.close()


async def test_an_idle_connection_closed_by_the_relay_is_replaced(
    relay: tuple[PickyRelay, int],
) -> None:
    handler, port = relay
    sender = SmtpSender(f"smtp://127.0.0.1:{port}", connections=1)
    await sender.send(message("first@example.com"))
    (idle,) = sender._idle
    assert idle.transport is not None
    idle.transport.close()  # as a relay does after its idle timeout
    await asyncio.sleep(0.1)
    await sender.send(message("second@example.com"))
    await sender.close()
    assert handler.received == ["first@example.com", "second@example.com"]


async def test_a_send_whose_lease_ran_out_stops_before_data(
    relay: tuple[PickyRelay, int],
) -> None:
    handler, port = relay
    sender = SmtpSender(f"smtp://127.0.0.1:{port}")
    with pytest.raises(LeaseLost):
        await sender.send(message("late@example.com"), may_send=lambda: False)
    await sender.send(message("held@example.com"), may_send=lambda: True)
    await sender.close()
    assert handler.received == ["held@example.com"]


@pytest.mark.parametrize(
    ("at", "error"),
    [("MAIL", aiosmtplib.SMTPReadTimeoutError), ("DATA", SmtpOutcomeUnknown)],
)
async def test_a_relay_that_stops_answering_times_the_transaction_out(
    at: str, error: type[Exception]
) -> None:
    """Before DATA nothing was delivered: a timeout like aiosmtplib's own, which the
    activity retries as an outage. After DATA the relay may have the message."""
    handler = Silent(at)
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    try:
        sender = SmtpSender(f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=0.5)
        with pytest.raises(error, match="within 0.5 s" if at == "MAIL" else "Timeout"):
            await sender.send(message("stuck@example.com"))
        assert sender._idle == []  # the connection in an unknown state is not reused
        assert handler.received == (["stuck@example.com"] if at == "DATA" else [])
    finally:
        server.close()


class Keeping(PickyRelay):
    """Keeps each message as it arrived; refuses the sender or the message when told."""

    def __init__(self, refuse: str = "") -> None:
        super().__init__()
        self.refuse = refuse
        self.contents: list[bytes] = []

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse == "MAIL":
            return "550 5.7.1 sender refused"
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse == "DATA":
            return "554 5.7.1 message refused"
        if self.refuse == "DATA-later":
            return "451 4.3.0 try again later"
        self.contents.append(envelope.original_content or b"")
        return "250 queued"


@asynccontextmanager
async def keeping(refuse: str = "") -> AsyncIterator[tuple[Keeping, SmtpSender]]:
    handler = Keeping(refuse)
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    sender = SmtpSender(f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        yield handler, sender
    finally:
        await sender.close()
        server.close()


async def test_the_relay_gets_the_message_as_composed() -> None:
    """Lines that begin with a dot are doubled on the wire and undone by the relay
    (a lone `.` line must not end the message early); line breaks arrive as CR LF."""
    body = b"Subject: dots\r\n\r\n.\r\n..two\r\n.one\r\nbare\nlone\rend"
    composed = message("x@example.com").data
    async with keeping() as (handler, sender):
        for data in (body, b"." + body, composed):
            await sender.send(OutgoingMail("a@example.com", ["b@example.com"], data))
    assert handler.contents == [
        b"Subject: dots\r\n\r\n.\r\n..two\r\n.one\r\nbare\r\nlone\r\nend\r\n",
        b".Subject: dots\r\n\r\n.\r\n..two\r\n.one\r\nbare\r\nlone\r\nend\r\n",
        composed,
    ]


@pytest.mark.parametrize(
    ("refuse", "error"),
    [
        ("MAIL", SmtpRejected),
        ("DATA", SmtpRejected),
        ("DATA-later", aiosmtplib.SMTPDataError),  # 4xx: retried, not given up
    ],
)
async def test_a_refusal_at_mail_or_after_data_is_reported_by_its_code(
    refuse: str, error: type[Exception]
) -> None:
    async with keeping(refuse) as (handler, sender):
        with pytest.raises(error) as raised:
            await sender.send(message("someone@example.com"))
        assert getattr(raised.value, "code", None) == {"MAIL": 550, "DATA": 554}.get(refuse, 451)
        # The refusal ended its transaction (RSET), not the connection.
        assert len(sender._idle) == 1 and handler.contents == []


async def test_a_relay_that_requires_starttls_is_greeted_again_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After STARTTLS the client must say EHLO again (RFC 3207): a relay answers a MAIL
    without it with 503, which would refuse every message for good."""
    ca_key, server_key = _key(), _key()
    ca = _certificate("Journeys test CA", ca_key, None)
    server_cert = _certificate(
        "localhost",
        server_key,
        (ca, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        dns_name="localhost",
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(_write_cert(tmp_path / "ca.pem", ca)))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(
        _write_cert(tmp_path / "server.pem", server_cert),
        _write_key(tmp_path / "server-key.pem", server_key),
    )
    handler = Keeping()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, tls_context=tls, require_starttls=True), "127.0.0.1", 0
    )
    sender = SmtpSender(f"smtp://localhost:{server.sockets[0].getsockname()[1]}")
    try:
        mail = message("tls@example.com")
        await sender.send(mail)
        await sender.send(mail)  # over the same connection, still greeted
        assert handler.contents == [mail.data, mail.data]
    finally:
        await sender.close()
        server.close()


class Recording(Keeping):
    """Keeps each transaction's envelope as well, counts RSETs, and refuses a recipient
    with the reply its local part names (`refuse-550-5.1.1@…`: 550 5.1.1)."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[tuple[str | None, list[str], bool]] = []
        self.resets = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.split("@", 1)[0]
        if local.startswith("refuse-"):
            _, code, *enhanced = local.split("-")
            return " ".join([code, *enhanced, f"<{address}>: Recipient address rejected"])
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.resets += 1
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.smtp_utf8))
        return await super().handle_DATA(server, session, envelope)


@asynccontextmanager
async def recording(smtputf8: bool) -> AsyncIterator[tuple[Recording, SmtpSender]]:
    """A relay that offers SMTPUTF8 (as Postfix does by default) or does not."""
    handler = Recording()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, enable_SMTPUTF8=smtputf8), "127.0.0.1", 0
    )
    sender = SmtpSender(f"smtp://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections=1)
    try:
        yield handler, sender
    finally:
        await sender.close()
        server.close()


async def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_relay_offers_it() -> None:
    """RFC 6531: the envelope and the To header carry the UTF-8 local part; the domain
    goes out as IDNA (an A-label), in the envelope and the header alike."""
    async with recording(smtputf8=True) as (handler, sender):
        mail = message("jörg@bücher.example")
        await sender.send(mail)
        await sender.send(message("ann@example.com"))
    assert handler.envelopes == [
        ("a@example.com", ["jörg@xn--bcher-kva.example"], True),
        ("a@example.com", ["ann@example.com"], False),  # only where it is needed
    ]
    assert b"\r\nTo: j\xc3\xb6rg@xn--bcher-kva.example\r\n" in handler.contents[0]
    assert handler.connections == 1


async def test_without_smtputf8_a_non_ascii_local_part_fails_for_good_on_a_kept_connection() -> (
    None
):
    async with recording(smtputf8=False) as (handler, sender):
        with pytest.raises(SmtpUnsendable, match="does not offer SMTPUTF8"):
            await sender.send(message("jörg@example.com"))
        # A Unicode domain alone needs no SMTPUTF8: it goes out as IDNA.
        await sender.send(message("ann@bücher.example"))
    assert handler.envelopes == [("a@example.com", ["ann@xn--bcher-kva.example"], False)]
    assert b"\r\nTo: ann@xn--bcher-kva.example\r\n" in handler.contents[0]
    assert handler.connections == 1  # the refused message dropped no pooled connection


async def test_a_refused_recipient_is_reset_and_the_connection_kept() -> None:
    """A 5xx to one recipient ends that transaction (RSET), not the connection; the
    refusal keeps the relay's code, enhanced status code and text, without the address."""
    async with recording(smtputf8=False) as (handler, sender):
        with pytest.raises(SmtpRejected) as refused:
            await sender.send(message("refuse-550-5.1.1@example.com"))
        await sender.send(message("ann@example.com"))
    error = refused.value
    assert (error.code, error.enhanced, error.stage) == (550, "5.1.1", "RCPT")
    assert error.delivery_error == "hard_bounce"
    assert str(error) == (
        "rejected by the mail server at RCPT: 550 5.1.1 <address>: Recipient address rejected"
    )
    assert handler.resets == 1 and handler.connections == 1
    assert handler.envelopes == [("a@example.com", ["ann@example.com"], False)]


@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        ("RCPT", "550 5.1.1 user unknown", "hard_bounce"),
        ("RCPT", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "hard_bounce"),
        ("RCPT", "550 5.2.1 mailbox disabled", "hard_bounce"),
        # Without an enhanced code nothing says it is the address: a relay's policy
        # answers the same (Exim's default), and would suppress every address it refused.
        ("RCPT", "550 no such user here", "rejected"),
        ("RCPT", "550 relay not permitted", "rejected"),
        ("RCPT", "551 user not local", "rejected"),
        ("RCPT", "553 mailbox name not allowed", "rejected"),
        ("RCPT", "550 5.0.0 no such user", "rejected"),  # undetermined
        ("RCPT", "550 5.1.0 address rejected", "hard_bounce"),
        ("RCPT", "550 5.1.7 bad sender mailbox syntax", "rejected"),  # the sender's
        ("RCPT", "554 5.7.1 Relay access denied", "rejected"),  # the relay's policy
        ("RCPT", "552 5.2.2 mailbox full", "rejected"),
        ("RCPT", "554 no valid recipients", "rejected"),
        ("DATA", "550 5.1.1 user unknown", "hard_bounce"),  # checked after DATA
        ("DATA", "554 5.7.1 message refused as spam", "rejected"),
        ("DATA", "550 message refused", "rejected"),  # about the message
        ("MAIL", "550 5.1.8 sender domain does not exist", "rejected"),
        ("MAIL", "550 5.1.1 sender unknown", "rejected"),
    ],
)
def test_which_permanent_refusals_are_hard_bounces(stage: str, reply: str, kind: str) -> None:
    code, _, text = reply.partition(" ")
    assert SmtpRejected(int(code), text, stage=stage).delivery_error == kind


@pytest.mark.parametrize(
    ("address", "smtputf8", "reason"),
    [
        (
            "jörg@example.com",
            False,
            "the mail server does not offer SMTPUTF8, which the address's non-ASCII "
            "local part needs",
        ),
        # Accepted by the contact API (no space, no angle brackets), not by compose.
        ("ann,bob@example.com", True, "the recipient must be one plain address"),
        ("ann@bü_cher.example", True, "not a valid internationalised domain"),
    ],
)
async def test_a_message_that_cannot_go_out_fails_for_good_instead_of_retrying(
    stack: Stack, address: str, smtputf8: bool, reason: str
) -> None:
    """No retry can send it: the row says `failed` with the reason, the activity fails
    non-retryable (the run fails at the step and the dossier says why), and the relay's
    connection stays in the pool."""
    local, domain = address.split("@")
    contact, *_ = await upsert_contact(
        stack.pool, ContactIn(email=f"{local}{uuid.uuid4().hex[:6]}@{domain}")
    )
    async with recording(smtputf8=smtputf8) as (handler, sender):
        activities = EmailActivities(stack.pool, stack.settings, sender)
        with pytest.raises(ApplicationError) as failed:
            await ActivityEnvironment().run(activities.send_email, send_input(contact.id, "bad"))
        assert failed.value.non_retryable and reason in failed.value.message
        await sender.send(message("ann@example.com"))
    row = await stack.pool.fetchrow(
        "SELECT status, error FROM messages WHERE contact_id = $1", contact.id
    )
    assert row is not None and row["status"] == "failed" and reason in row["error"]
    assert contact.email not in row["error"]
    assert handler.connections == 1
    assert handler.envelopes == [("a@example.com", ["ann@example.com"], False)]


async def test_a_non_ascii_address_is_sent_over_smtputf8_by_the_activity(stack: Stack) -> None:
    email = f"jörg-{uuid.uuid4().hex[:6]}@bücher.example"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email))
    async with recording(smtputf8=True) as (handler, sender):
        activities = EmailActivities(stack.pool, stack.settings, sender)
        result = await ActivityEnvironment().run(
            activities.send_email, send_input(contact.id, "eai")
        )
    assert result.status == "sent"
    ((_, recipients, utf8),) = handler.envelopes
    assert recipients == [email.replace("bücher", "xn--bcher-kva")] and utf8


async def test_the_headers_name_the_sending_domain_and_satisfy_the_spam_filters(
    stack: Stack,
) -> None:
    """What SpamAssassin 4.0 and a reader of the headers found: `Date` in a known zone
    (`+0000`, not `-0000`), a `List-Id` beside `List-Unsubscribe` (LIST_PARTIAL_SHORT_MSG
    fires without it), and the Message-ID and the envelope sender in the sending domain
    of JOURNEYS_MAIL_FROM, not `localhost` (here the public URL's host)."""
    settings = stack.settings.model_copy(update={"mail_from": "Shop <news@shop.example>"})
    contact, *_ = await upsert_contact(
        stack.pool, ContactIn(email=f"ann-{uuid.uuid4().hex[:6]}@example.com")
    )
    async with recording(smtputf8=False) as (handler, sender):
        activities = EmailActivities(stack.pool, settings, sender)
        env = ActivityEnvironment()
        journey = await env.run(activities.send_email, send_input(contact.id, "welcome"))
        own_sender = await env.run(
            activities.send_email,
            send_input(
                contact.id, "service", sender="Sam <sam@sales.example>", recurring_key="service"
            ),
        )
    assert journey.status == own_sender.status == "sent"
    first, second = (message_from_bytes(raw, policy=policy.default) for raw in handler.contents)
    assert first["Date"].endswith(" +0000") and second["Date"].endswith(" +0000")
    assert first["Message-ID"] == f"<{journey.message_id}@shop.example>"
    assert second["Message-ID"] == f"<{own_sender.message_id}@shop.example>"
    assert first["List-Id"] == "<welcome.shop.example>"
    assert second["List-Id"] == "<service.shop.example>"  # a recurring send's own key
    assert first["List-Unsubscribe"] and second["List-Unsubscribe"]
    assert second["From"] == "Sam <sam@sales.example>"
    # Bounces go to the product's address, whoever the step says the mail is from.
    assert [mail_from for mail_from, _, _ in handler.envelopes] == ["news@shop.example"] * 2
