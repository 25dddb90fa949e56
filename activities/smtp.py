"""SMTP delivery with a small pool of open connections.

Opening a connection costs a handshake and EHLO (plus TLS and AUTH for a real
relay) per message; keeping a few open lets a busy worker send over them. A reply
that refuses a message ends its transaction (RSET), not the connection.

What becomes of a send follows from how it ended:
- a permanent refusal (5xx) is `SmtpRejected`: a hard bounce when its enhanced status
  code says the recipient's address does not work (`journeys.delivery_status`),
  otherwise a refusal of this message;
- a message that cannot go out through this relay whatever the retries (an
  address that needs SMTPUTF8, which the relay does not offer) is `SmtpUnsendable`;
- a connection lost after DATA began is `SmtpOutcomeUnknown`;
- anything else the relay says or does (4xx, a timeout, a refused connection) is an
  outage, retried.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.typing import SMTPStatus

from activities.message import OutgoingMail
from activities.sends import LeaseLost
from journeys.definition.common import DeliveryErrorKind
from journeys.delivery_status import enhanced_code, permanent_failure_kind
from journeys.text import printable, without_addresses


class SmtpOutcomeUnknown(Exception):
    """The connection failed after DATA began: the relay may or may not have taken the
    message (RFC 1047). Sending it again may deliver it twice."""


class SmtpUnsendable(Exception):
    """This relay cannot take the message as it is, whatever the retries: it fails."""


# How much of a refusal's text is kept (a reply may run to several lines).
REPLY_TEXT_LIMIT = 300


def refusal_kind(stage: str, code: int, enhanced: str | None) -> DeliveryErrorKind:
    """What a permanent refusal at `stage` (MAIL, RCPT, DATA) is: a hard bounce when its
    enhanced status code says the recipient's address does not work (the address is
    then suppressed), else a refusal of this message (`rejected`: the relay's policy,
    the content, the sender). The rule DSNs follow too
    (`journeys.delivery_status.permanent_failure_kind`): a refusal without an enhanced
    code is `rejected` whatever its reply code, since a bare `550` at RCPT is as often
    the relay's policy (Exim's `550 relay not permitted`) as an unknown user.
    """
    if stage == "MAIL" or not 500 <= code < 600:
        return "rejected"
    return permanent_failure_kind(enhanced)


class SmtpRejected(Exception):
    """The relay refused the message for good (a 5xx answer) at MAIL, RCPT or DATA.

    Keeps the reply's code, enhanced status code and text (on one line, bounded,
    without e-mail addresses: the reason goes to logs, Temporal's history and the
    message log); `delivery_error` is what the send path records (`refusal_kind`).
    """

    def __init__(self, code: int, text: str, *, stage: str) -> None:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self.code, self.stage = code, stage
        self.enhanced = enhanced_code(lines[0]) if lines else None
        if self.enhanced is not None:  # repeated on each line of a multi-line reply
            lines[1:] = [line.removeprefix(self.enhanced).lstrip() for line in lines[1:]]
        said = printable(without_addresses(" ".join(lines)))
        if len(said) > REPLY_TEXT_LIMIT:
            said = said[: REPLY_TEXT_LIMIT - 1] + "…"
        self.reply = f"{code} {said}".rstrip()
        self.delivery_error = refusal_kind(stage, code, self.enhanced)
        super().__init__(f"rejected by the mail server at {stage}: {self.reply}")


# SMTP transactions one worker has in flight at most: also the most copies a
# worker crash can duplicate (README, "Reliability").
DEFAULT_CONNECTIONS = 8
# Seconds to connect, and for a whole transaction (MAIL, RCPT, DATA).
TIMEOUT = 30.0


# The commands of a transaction go straight to aiosmtplib's protocol (its public
# `execute_command`, `write` and `read_response`) rather than through `SMTP.mail`,
# `rcpt` and `data`: those parse each address again and run two regular expressions
# over the whole message, 12% of a bulk send's worker CPU (py-spy). Our addresses are
# plain already (`compose` made them so), and our messages have CR LF line breaks.
_BARE_BREAK = re.compile(rb"\r\n|\r|\n")


def _address(address: str, mail: OutgoingMail) -> bytes:
    # ASCII, as aiosmtplib's default; UTF-8 in a transaction under SMTPUTF8.
    return b"<" + address.encode("utf-8" if mail.smtputf8 else "ascii") + b">"


def _protocol(smtp: aiosmtplib.SMTP) -> SMTPProtocol:
    if smtp.protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    return smtp.protocol


def _wire(data: bytes) -> bytes:
    """The DATA payload: CR LF line breaks, lines that begin with a dot doubled (RFC
    5321 4.5.2), the end of data marked."""
    bare = data.replace(b"\r\n", b"")
    if b"\r" in bare or b"\n" in bare:
        # A lone CR or LF is read differently by different relays (SMTP smuggling).
        data = _BARE_BREAK.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return (b"." + data if data.startswith(b".") else data) + b".\r\n"


async def _envelope(smtp: aiosmtplib.SMTP, mail: OutgoingMail) -> None:
    """MAIL FROM and RCPT TO: before DATA, so nothing can have been delivered yet."""
    protocol = _protocol(smtp)
    options: list[bytes] = []
    if mail.smtputf8:
        if not smtp.supports_extension("smtputf8"):
            # Checked before a command is sent: the connection stays as it was.
            raise SmtpUnsendable(
                "the mail server does not offer SMTPUTF8, which the address's non-ASCII "
                "local part needs"
            )
        options.append(b"SMTPUTF8")
        if smtp.supports_extension("8bitmime"):  # the header's UTF-8 is 8-bit
            options.append(b"BODY=8BITMIME")
    reply = await protocol.execute_command(
        b"MAIL", b"FROM:" + _address(mail.envelope_from, mail), *options
    )
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, mail.envelope_from)
    for recipient in mail.recipients:
        reply = await protocol.execute_command(b"RCPT", b"TO:" + _address(recipient, mail))
        if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)


# Seconds a RSET after a refusal may take before the connection is dropped instead.
RESET_TIMEOUT = 5.0


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    """End a transaction the relay refused (RSET), so that the connection can carry the
    next one: whether it can."""
    try:
        async with asyncio.timeout(RESET_TIMEOUT):
            reply = await _protocol(smtp).execute_command(b"RSET")
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        return False
    return reply.code == SMTPStatus.completed


# The relay's answers that refuse a transaction (`_envelope`, `_data`), at their stage.
_REFUSALS = (
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPDataError,
)


def _stage(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "MAIL"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return "RCPT"
    return "DATA"


async def _data(smtp: aiosmtplib.SMTP, mail: OutgoingMail) -> None:
    protocol = _protocol(smtp)
    reply = await protocol.execute_command(b"DATA")
    if reply.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    protocol.write(_wire(mail.data))
    reply = await protocol.read_response()
    if reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


class SmtpSender:
    """Delivers finished messages to the relay named by SMTP_URL."""

    def __init__(
        self, smtp_url: str, *, connections: int = DEFAULT_CONNECTIONS, timeout: float = TIMEOUT
    ) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("SMTP_URL must look like smtp://host:port or smtps://user:pass@host")
        self.hostname = parts.hostname or "localhost"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.use_tls = parts.scheme == "smtps"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            use_tls=self.use_tls,
            start_tls=False if self.use_tls else None,
            username=self.username,
            password=self.password,
            timeout=None,  # replies: `send` keeps one deadline for the whole transaction
        )
        try:
            async with asyncio.timeout(self.timeout):  # greeting, EHLO, STARTTLS and AUTH
                await smtp.connect()
                # aiosmtplib greets with EHLO only on its way to STARTTLS or AUTH, and
                # forgets it after STARTTLS (RFC 3207); its mail/rcpt/data would greet
                # again, the protocol's commands we send (`_envelope`) do not.
                if smtp.is_ehlo_or_helo_needed:
                    try:
                        await smtp.ehlo()
                    except aiosmtplib.SMTPHeloError:
                        await smtp.helo()
        except TimeoutError as exc:
            smtp.close()
            if isinstance(exc, aiosmtplib.SMTPException):
                raise
            raise aiosmtplib.SMTPConnectTimeoutError(
                f"no connection to the mail server within {self.timeout:g} s"
            ) from None
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def send(self, mail: OutgoingMail, may_send: Callable[[], bool] | None = None) -> None:
        """Deliver `mail`. `may_send` is asked once more just before DATA: when it
        says no, the transaction is abandoned (`LeaseLost`) with nothing delivered."""
        async with self._slots:
            smtp = self._idle.pop() if self._idle else None
            reused = smtp is not None and smtp.is_connected
            if not reused:
                smtp = await self._connect()
            assert smtp is not None
            in_data = False
            try:
                # One deadline for the transaction, not aiosmtplib's per reply: its
                # asyncio.wait_for per reply cost 50 us a mail on Python 3.11 (measured).
                async with asyncio.timeout(self.timeout):
                    try:
                        await _envelope(smtp, mail)
                    except aiosmtplib.SMTPServerDisconnected:
                        if not reused:
                            raise
                        # The relay closed a connection that sat idle: once more on a new
                        # one. Only before DATA: a connection lost during DATA may have
                        # delivered, and must not be followed by a second transaction here.
                        smtp.close()
                        smtp = await self._connect()
                        await _envelope(smtp, mail)
                    if may_send is not None and not may_send():
                        raise LeaseLost("the message's lease ran out before DATA")
                    in_data = True
                    await _data(smtp, mail)
            except SmtpUnsendable:
                self._idle.append(smtp)  # nothing was said on it
                raise
            except _REFUSALS as exc:
                # The relay answered: the transaction is over, the connection need not
                # be (RSET), unless the relay said it is closing it (421).
                await self._keep_if_reset(smtp, exc.code)
                if 500 <= exc.code < 600:
                    raise SmtpRejected(exc.code, exc.message, stage=_stage(exc)) from None
                raise
            except (TimeoutError, aiosmtplib.SMTPServerDisconnected) as exc:
                smtp.close()
                if in_data:
                    raise SmtpOutcomeUnknown(f"{type(exc).__name__}: {exc}") from exc
                if not isinstance(exc, aiosmtplib.SMTPException):  # the deadline's
                    raise aiosmtplib.SMTPReadTimeoutError(
                        f"no answer from the mail server within {self.timeout:g} s"
                    ) from None
                raise
            except BaseException:
                smtp.close()
                raise
            self._idle.append(smtp)

    async def _keep_if_reset(self, smtp: aiosmtplib.SMTP, code: int) -> None:
        """Back to the pool when the refused transaction could be reset; else closed."""
        try:
            kept = 400 <= code < 600 and code != 421 and await _reset(smtp)
        except BaseException:  # cancelled during the RSET
            smtp.close()
            raise
        if kept:
            self._idle.append(smtp)
        else:
            smtp.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()
