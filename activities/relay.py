"""A bulk attempt's view of the relay: one transaction first, and a stop at the first
sign that the relay is unavailable.

A page of a bulk run (a campaign's mails, a recurring run's) used to send every mail
whatever the relay said: against a relay answering 421, each attempt opened a
connection per mail of the page (the fault run's relay got 1,720 in 30 s), and every
retry did it again. A `RelayGate` is shared by the pages of one activity attempt:

- until the relay has answered one transaction of the attempt, one goes at a time
  (a relay that is down costs an attempt one connection, not one per mail);
- a transaction that says the relay is unavailable (`relay_unavailable`: 421, a 451
  that is not about the recipient, a 4xx to MAIL FROM, no connection, no answer, the
  connection lost) closes the gate: every mail of the attempt not yet handed over
  stops with `RelayDown`, and the page is retried whole, with Temporal's backoff,
  logging one line per attempt (`activities.retries.quiet_outages`);
- at most as many transactions as the sender has connections are under way, so that
  those already waiting for a connection when the gate closes are few.

A refusal of one message (a 5xx, a greylisted recipient's 451 4.7.1, a full mailbox's
452 at RCPT) is an answer: the page goes on.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiosmtplib

from activities.retries import redacted
from activities.smtp import SmtpOutcomeUnknown, SmtpRejected
from journeys.outages import Unavailable, outage_of

T = TypeVar("T")

MAIL_SERVER = "the mail server"

# The enhanced status code at the start of a reply (RFC 3463: class.subject.detail).
_ENHANCED = re.compile(r"\s*[245]\.(\d{1,3})\.\d{1,3}\b")
# Enhanced subjects of a temporary failure that concern this recipient or message, not
# the relay: addressing (X.1), the mailbox (X.2), security or policy (X.7: greylisting).
_ABOUT_THE_MESSAGE = {"1", "2", "7"}


def relay_unavailable(exc: BaseException) -> bool:
    """Whether a failed transaction says the relay itself is unavailable, so that the
    next transaction would fail as well."""
    if isinstance(exc, SmtpOutcomeUnknown):
        return True  # the connection was lost during DATA
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code == 421:  # "service not available, closing transmission channel"
            return True
        if not 400 <= exc.code < 500:
            return False
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            return True  # MAIL FROM: the same for every mail of the page
        if exc.code != 451:  # 450 mailbox busy, 452 too many recipients: this message
            return False
        found = _ENHANCED.match(exc.message)
        return found is None or found.group(1) not in _ABOUT_THE_MESSAGE
    return outage_of(exc) == MAIL_SERVER  # refused, reset, timed out, disconnected


def _answered(exc: BaseException) -> bool:
    """Whether the relay answered the transaction (it is up), whatever it said."""
    return isinstance(exc, SmtpRejected | aiosmtplib.SMTPResponseException)


class RelayDown(Unavailable):
    """This mail was not handed to the relay: an earlier transaction of the attempt
    said that the relay is unavailable."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(MAIL_SERVER, f"{type(cause).__name__}: {redacted(str(cause))}")
        self.cause = cause


class RelayGate:
    """The relay as the pages of one bulk attempt see it (see the module)."""

    def __init__(self, connections: int) -> None:
        self._turns = asyncio.Semaphore(connections)
        self._first = asyncio.Lock()
        self._answered = False
        self.down: BaseException | None = None

    def check(self) -> None:
        """Raise `RelayDown` once a transaction said the relay is unavailable."""
        if self.down is not None:
            raise RelayDown(self.down)

    async def send(self, transaction: Callable[[], Awaitable[T]]) -> T:
        """Run one SMTP transaction under the gate."""
        self.check()
        async with self._turns:
            if not self._answered:
                async with self._first:  # one at a time until the relay has answered
                    if not self._answered:
                        return await self._watched(transaction)
            return await self._watched(transaction)

    async def _watched(self, transaction: Callable[[], Awaitable[T]]) -> T:
        self.check()
        try:
            result = await transaction()
        except Exception as exc:
            if relay_unavailable(exc):
                if self.down is None:
                    self.down = exc
            elif _answered(exc):
                self._answered = True
            raise
        self._answered = True
        return result
