"""Bounces from a relay: each mail goes out with a bounce address of its own, and what
comes back to it is read and recorded (`journeys bounces serve`).

With JOURNEYS_BOUNCE_DOMAIN set, a journey mail's envelope sender (MAIL FROM, where
relays send delivery-status notices and feedback loops their complaints) is
`bounces+<token>@<bounce domain>` (VERP), the token being the message id signed with
JOURNEYS_SECRET (`journeys.tokens.bounce_token`). Notices reach the product in one of
two ways, both ending in `Intake.take`:

- an SMTP/LMTP listener (`BounceListener`, aiosmtpd) that the relay sends the bounce
  domain to (Postfix: a transport map line `bounce.example.com lmtp:inet:host:2525`);
  it speaks LMTP (LHLO) and SMTP (EHLO/HELO) on the same port;
- an IMAP poller (`ImapPoller`, the stdlib's imaplib in a thread), for a mailbox that
  receives the bounce domain's mail (a mailbox with sub-addressing, `bounces@domain`,
  receives `bounces+<token>@domain`): every mail in it is taken, then deleted.

`judge` decides what a mail is (pure): the message comes from the signed token in its
envelope recipient (or, for a notice sent to a fixed address such as a feedback loop's,
in the report's Original-Mail-From, X-Postfix-Sender or the returned message's
Return-Path), never from an unsigned header; the report (`journeys.notices`) says what
happened, and the returned message's Message-ID, where present, must be that message's.
A genuine DSN or ARF report of an error is recorded as the same delivery error a
delivery webhook makes (`journeys.store.delivery`, through the outbox: the message's
follow-ups and waits, a hard bounce or a complaint suppressing the address); a forged,
unparseable or inconsistent one records nothing and is kept, raw, with the reason
(`journeys bounces kept`, GET /bounces/kept).

No mail can stop the intake: whatever the parser makes of it, and whatever PostgreSQL
refuses of what it made (a NUL in a header), the mail is kept with the reason and
accepted (LMTP's 250) or deleted (IMAP). Only an outage (`journeys.outages.outage_of`:
PostgreSQL away) leaves it with the relay (451: it tries again) or in the mailbox (the
next poll), and stops a poll before the mails after it.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.utils import getaddresses
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from journeys.db import create_pool
from journeys.notices import NotAReport, parse_notice
from journeys.outages import outage_of
from journeys.settings import BounceSettings, check_domain
from journeys.store.bounces import Judged, Taken, Via, digest_of, take_notice
from journeys.text import printable, without_addresses
from journeys.tokens import BOUNCE_LOCAL_PART, verify_bounce_token

log = structlog.get_logger(__name__)

# A notice larger than this is refused at DATA (552): DSNs return the original message,
# which Postfix cuts at bounce_size_limit (50 kB), and a mail here has attachments of at
# most 25 MB.
MAX_NOTICE = 40 * 1024 * 1024
# Headers where a mailbox's copy names the address it was delivered to.
_DELIVERED_TO = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


def _at_domain(address: str, domain: str) -> tuple[str, str] | None:
    """(local part, domain) of an address at the bounce domain, else None."""
    local, at, where = address.strip().strip("<>").rpartition("@")
    if not at or not local or where.lower().rstrip(".") != domain:
        return None
    return local, where


def _tokens(addresses: list[str] | tuple[str, ...], domain: str) -> list[str]:
    """The tokens of the bounce addresses among `addresses` (any local part, `+`, token)."""
    found = []
    for address in addresses:
        parts = _at_domain(address, domain)
        if parts is None:
            continue
        _, plus, token = parts[0].rpartition("+")
        if plus and token:
            found.append(token)
    return list(dict.fromkeys(found))


def judge(raw: bytes, envelope_to: list[str], secret: str, domain: str) -> Judged:
    """What the mail `raw`, delivered to `envelope_to`, is (see the module's docstring)."""
    try:
        notice = parse_notice(raw)
        problem = None
    except NotAReport as exc:
        notice, problem = None, str(exc)
    tokens = _tokens(envelope_to, domain)
    if not tokens and notice is not None:
        tokens = _tokens(notice.senders, domain)
    if not tokens:
        if problem is not None:
            return Judged("kept", f"unparseable: {problem}")
        return Judged(
            "kept",
            f"names no message: no bounce address ({BOUNCE_LOCAL_PART}+<token>@{domain}) in its"
            " envelope or its report",
        )
    message_id = next(
        (m for m in (verify_bounce_token(t, secret) for t in tokens) if m is not None), None
    )
    if message_id is None:
        return Judged("kept", "forged: the signature of its bounce address does not verify")
    if notice is None:
        return Judged("kept", f"unparseable: {problem}", message_id)
    report, kind, detail = notice.report, notice.kind, notice.detail
    if notice.original_message_id and str(message_id) not in notice.original_message_id.lower():
        why = (
            "inconsistent: the returned message's Message-ID is not that of the message its"
            " bounce address names"
        )
        return Judged("kept", why, message_id, report, kind, detail)
    if kind is None:
        return Judged("ignored", f"reports no delivery error ({detail})", message_id, report)
    return Judged("recorded", None, message_id, report, kind, detail)


class Intake:
    """Judge a mail that reached the bounce address, and store it (`take_notice`)."""

    def __init__(self, pool: asyncpg.Pool, secret: str, domain: str) -> None:
        self.pool, self.secret, self.domain = pool, secret, check_domain(domain)

    async def take(self, raw: bytes, envelope_to: list[str], via: Via) -> Taken:
        """Judge and store `raw`. Raises only when the mail could not be stored for a
        reason that may pass: an outage, or (a bug of the product, with its traceback
        logged) when even keeping it failed; a mail that cannot be read, or whose
        reading PostgreSQL refuses, is kept with the reason."""
        # Up to MAX_NOTICE to parse and hash: off the event loop the listener serves on.
        judged, digest = await asyncio.to_thread(self._judge, raw, envelope_to)
        try:
            taken = await take_notice(self.pool, raw, envelope_to, via, judged, digest)
        except Exception as exc:
            if outage_of(exc) is not None:
                raise
            why = _reason(exc)
            log.error("bounces.not_stored", via=via, outcome=judged.outcome, reason=why)
            kept = Judged("kept", f"not stored as {judged.outcome}: {why}", judged.message_id)
            addresses = [printable(a)[:320] for a in envelope_to]
            taken = await take_notice(self.pool, raw, addresses, via, kept, digest)
            judged = kept
        # No address in the log: the message id, what it was, and why it was kept.
        log.info(
            "bounces.taken",
            via=via,
            outcome=taken.outcome,
            notice_id=taken.id,
            message_id=str(judged.message_id) if judged.message_id else None,
            report=judged.report,
            kind=judged.kind,
            reason=judged.reason,
        )
        return taken

    def _judge(self, raw: bytes, envelope_to: list[str]) -> tuple[Judged, bytes]:
        try:
            judged = judge(raw, envelope_to, self.secret, self.domain)
        except Exception as exc:  # a bug of the product: the mail is kept, with it
            # No traceback: its message may quote the notice's headers (addresses).
            log.error("bounces.not_judged", reason=_reason(exc))
            judged = Judged("kept", f"not judged: {_reason(exc)}")
        return judged, digest_of(raw)


def _reason(exc: BaseException) -> str:
    """Why a mail was not stored as judged, as a kept notice's reason (and a log's)."""
    return printable(without_addresses(f"{type(exc).__name__}: {exc}"))[:300]


# -- the SMTP/LMTP listener ---------------------------------------------------------------


class _Server(SMTP):
    """aiosmtpd's SMTP server that also answers LHLO, as an LMTP server (RFC 2033): one
    port serves a relay configured either way. In LMTP each recipient gets its own reply
    after DATA, and aiosmtpd gives one: so an LMTP transaction takes one recipient (the
    others get 452 and are sent again in a transaction of their own; a DSN has one)."""

    lmtp = False

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str) -> None:
        self.lmtp = True
        await super().smtp_EHLO(arg)


class _Handler:
    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if _at_domain(address, self.intake.domain) is None:
            return f"550 5.7.1 only mail for {self.intake.domain} is taken here"
        if envelope.rcpt_tos and getattr(server, "lmtp", False):
            return "452 4.5.3 one recipient per LMTP transaction: send the others again"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        via: Via = "lmtp" if getattr(server, "lmtp", False) else "smtp"
        raw = envelope.original_content or b""
        try:
            taken = await self.intake.take(raw, list(envelope.rcpt_tos), via)
        except Exception as exc:  # the relay keeps the notice and tries again
            # An outage; else not even keeping the mail worked (a bug, not the mail's).
            log.warning(
                "bounces.try_later",
                via=via,
                reason=f"{outage_of(exc) or 'a bug'}: {type(exc).__name__}",
                exc_info=outage_of(exc) is None,
            )
            return "451 4.3.0 the notice could not be stored now: try again later"
        return f"250 2.0.0 taken ({taken.outcome})"


class BounceListener:
    """`async with BounceListener(intake, host, port) as listener:` serves SMTP and LMTP
    for the bounce domain on `listener.port` (0: a free port)."""

    def __init__(self, intake: Intake, host: str = "127.0.0.1", port: int = 2525) -> None:
        self.intake, self.host, self.port = intake, host, port
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BounceListener:
        # aiosmtpd logs every command at info (RCPT TO:<address>); the product logs none.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = _Handler(self.intake)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Server(
                handler,
                hostname=self.intake.domain,
                ident="Journeys bounces",
                data_size_limit=MAX_NOTICE,
            ),
            self.host,
            self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("bounces.listening", host=self.host, port=self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# -- the IMAP poller ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapMailbox:
    """`imaps://user:password@host[:port][/mailbox]` (TLS), or `imap://…` (plain; with
    STARTTLS when the server offers it). The mailbox defaults to INBOX."""

    host: str
    port: int
    tls: bool
    user: str
    password: str = field(repr=False)
    mailbox: str

    @classmethod
    def parse(cls, url: str) -> ImapMailbox:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise ValueError("JOURNEYS_BOUNCE_IMAP_URL must be imaps://user:password@host/mailbox")
        if not parts.username or parts.password is None:
            raise ValueError("JOURNEYS_BOUNCE_IMAP_URL needs a user and a password")
        tls = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            tls=tls,
            user=unquote(parts.username),
            password=unquote(parts.password),
            mailbox=unquote(parts.path.lstrip("/")) or "INBOX",
        )


def delivered_to(raw: bytes) -> list[str]:
    """The addresses a mailbox's copy says it was delivered to (its headers)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    parsed = message_from_bytes(head + b"\r\n\r\n", policy=policy.compat32)
    values = [str(v) for name in _DELIVERED_TO for v in parsed.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


class _Session:
    """One IMAP login (blocking calls, each run in a thread by the poller)."""

    def __init__(self, box: ImapMailbox, timeout: float) -> None:
        if box.tls:
            self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                box.host, box.port, ssl_context=ssl.create_default_context(), timeout=timeout
            )
        else:
            self.imap = imaplib.IMAP4(box.host, box.port, timeout=timeout)
            if "STARTTLS" in self.imap.capabilities:
                self.imap.starttls(ssl.create_default_context())
        self.imap.login(box.user, box.password)
        typ, _ = self.imap.select(_quoted(box.mailbox))
        if typ != "OK":
            raise imaplib.IMAP4.error(f"mailbox {box.mailbox!r} cannot be selected")

    def uids(self, limit: int) -> list[bytes]:
        typ, data = self.imap.uid("SEARCH", "UNDELETED")
        if typ != "OK":
            raise imaplib.IMAP4.error("UID SEARCH failed")
        return (data[0] or b"").split()[:limit]

    def fetch(self, uid: bytes) -> bytes | None:
        typ, data = self.imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error("UID FETCH failed")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        return None  # gone meanwhile (another poller took it)

    def delete(self, uid: bytes) -> None:
        self.imap.uid("STORE", uid.decode(), "+FLAGS.SILENT", r"(\Deleted)")

    def close(self) -> None:
        try:
            self.imap.expunge()
            self.imap.close()
        finally:
            self.imap.logout()


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapPoller:
    """Every `every` seconds: take each mail of the mailbox (`Intake.take`), then delete
    it. A mail whose notice could not be stored because PostgreSQL is away stays for the
    next poll, and so do the mails after it (the poll stops); one that not even keeping
    could store (a bug) stays too, logged, and the poll goes on to the next; a mail
    taken twice (deleted, then the connection lost before EXPUNGE) is recognised by its
    digest and records nothing more."""

    BATCH = 200

    def __init__(
        self,
        intake: Intake,
        box: ImapMailbox,
        every: float = 60,
        timeout: float = 30,
        connect: Callable[[ImapMailbox, float], _Session] = _Session,
    ) -> None:
        self.intake, self.box, self.every, self.timeout = intake, box, every, timeout
        self._connect = connect

    async def poll(self) -> int:
        """Take what the mailbox holds now (up to BATCH mails); how many were taken."""
        session = await asyncio.to_thread(self._connect, self.box, self.timeout)
        taken = 0
        try:
            for uid in await asyncio.to_thread(session.uids, self.BATCH):
                raw = await asyncio.to_thread(session.fetch, uid)
                if raw is not None:
                    try:
                        to = await asyncio.to_thread(delivered_to, raw)
                        await self.intake.take(raw, to, "imap")
                    except Exception as exc:
                        if outage_of(exc) is not None:
                            raise  # this mail and the rest wait for the next poll
                        log.error("bounces.imap_left", uid=uid.decode(), reason=_reason(exc))
                        continue  # left in the mailbox; the next mails are taken
                    taken += 1
                await asyncio.to_thread(session.delete, uid)
        finally:
            await asyncio.to_thread(session.close)
        return taken

    async def run(self) -> None:
        """Poll for ever; a failure is one log line per change of state, not a crash."""
        failing: str | None = None
        while True:
            try:
                count = await self.poll()
            except Exception as exc:  # IMAP or PostgreSQL away, a wrong password
                reason = f"{outage_of(exc) or 'IMAP'}: {type(exc).__name__}: {exc}"[:300]
                if reason != failing:
                    log.warning("bounces.imap_failed", reason=reason)
                failing = reason
            else:
                if failing is not None:
                    log.info("bounces.imap_back")
                failing = None
                if count == self.BATCH:
                    continue  # more waiting: no pause
            await asyncio.sleep(self.every)


# -- `journeys bounces serve` ---------------------------------------------------------------


def parse_listen(value: str) -> tuple[str, int] | None:
    """`host:port` (`[::1]:2525` for IPv6), or None for an empty value (no listener)."""
    if not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"JOURNEYS_BOUNCE_LISTEN: {value[:100]!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(settings: BounceSettings) -> None:
    """The listener and/or the poller, as configured, until cancelled."""
    if not settings.bounce_domain:
        raise ValueError("set JOURNEYS_BOUNCE_DOMAIN: the domain of the bounce addresses")
    listen = parse_listen(settings.bounce_listen)
    imap = settings.bounce_imap_url
    if listen is None and imap is None:
        raise ValueError("set JOURNEYS_BOUNCE_LISTEN or JOURNEYS_BOUNCE_IMAP_URL (or both)")
    box = ImapMailbox.parse(imap.get_secret_value()) if imap is not None else None
    pool = await create_pool(settings.database_url)
    intake = Intake(pool, settings.secret.get_secret_value(), settings.bounce_domain)
    try:
        async with AsyncExitStack() as stack:
            waits: list[asyncio.Future[Any]] = []
            if listen is not None:
                listener = await stack.enter_async_context(BounceListener(intake, *listen))
                print(
                    f"journeys bounces: SMTP/LMTP for {intake.domain} on"
                    f" {listener.host}:{listener.port}",
                    flush=True,
                )
                waits.append(asyncio.get_running_loop().create_future())  # for ever
            if box is not None:
                print(
                    f"journeys bounces: polling {box.mailbox} at {box.host}:{box.port}"
                    f" every {settings.bounce_imap_every:g} s",
                    flush=True,
                )
                waits.append(
                    asyncio.ensure_future(
                        ImapPoller(intake, box, every=settings.bounce_imap_every).run()
                    )
                )
            await asyncio.gather(*waits)
    finally:
        await pool.close()
