"""SMTP delivery against a real aiosmtpd server: connections are reused, and a
permanent refusal is recorded instead of being retried for ever."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.message import OutgoingMail, compose
from activities.sends import LeaseLost
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected, SmtpSender
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

    contact, *_ = await upsert_contact(stack.pool, ContactIn(email="nobody@refused.example"))
    activities = EmailActivities(stack.pool, stack.settings, sender)
    fields: dict[str, Any] = {
        "idempotency_key": f"refused-{uuid.uuid4()}",
        "workflow_id": "journey/r/x",
        "journey_key": "r",
        "version": 1,
        "contact_id": str(contact.id),
        "step": "mail1",
        "subject": "s",
        "html": "<p>h</p>",
    }
    result = await ActivityEnvironment().run(activities.send_email, SendEmailInput(**fields))
    assert result.status == "skipped" and result.reason == "rejected by the mail server (550)"
    status = await stack.pool.fetchval(
        "SELECT status FROM messages WHERE id = $1::uuid", result.message_id
    )
    assert status == "rejected"
    assert "nobody@refused.example" not in (result.reason or "")
    await sender.close()
    assert handler.received == []


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
        assert sender._idle == [] and handler.contents == []


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
