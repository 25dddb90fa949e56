"""Telling an outage from a bug: which backend an exception says is unavailable.

The API answers an outage with 503 (`api.outages`), activities retry it with one
log line (`activities.retries`); anything else is a bug and keeps its traceback.
A backend the process watches (the worker's PostgreSQL) is logged once when its
outage begins and once when it ends (`OutageLog`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosmtplib
import asyncpg
import structlog
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")

log = structlog.get_logger(__name__)


class Unavailable(Exception):
    """A backend did not answer in time: raised by `bounded`."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(reason)
        self.backend = backend


async def bounded(backend: str, call: Awaitable[T], seconds: float) -> T:
    """`await call`, or `Unavailable` when `backend` has not answered within `seconds`.

    For a server that accepts connections and never answers: the Temporal client's
    lazy connect waits 30 s whatever the call's own rpc_timeout says.
    """
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        raise Unavailable(backend, f"no answer within {seconds:g} s") from None


# Temporal answers that mean "not now" rather than "not like that".
_TEMPORAL_OUTAGE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


def _backend_in_traceback(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith("asyncpg"):
            return "PostgreSQL"
        if module.startswith("temporalio"):
            return "Temporal"
        if module.startswith("aiosmtplib"):
            return "the mail server"
        tb = tb.tb_next
    return None


# Every exception type `outage_of` can recognise (for handlers registered by type).
OUTAGE_CANDIDATES: tuple[type[Exception], ...] = (
    Unavailable,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    RPCError,
    RuntimeError,
    aiosmtplib.SMTPException,
    OSError,
)


def outage_of(exc: BaseException) -> str | None:
    """Which backend `exc` says is unavailable, or None when it is not an outage."""
    if isinstance(exc, Unavailable):
        return exc.backend
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError  # shutting down, starting up
        | asyncpg.exceptions.InsufficientResourcesError  # too many connections
        # A connection that PostgreSQL dropped mid-operation can fail the next use with
        # "cannot switch to state ...; another operation is in progress" (seen during
        # restarts); the pool replaces it, so a retry gets a fresh one.
        | asyncpg.InternalClientError,
    ):
        return "PostgreSQL"
    if isinstance(exc, RPCError):
        return "Temporal" if exc.status in _TEMPORAL_OUTAGE else None
    if isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect"):
        return "Temporal"  # the lazy client could not reach the server
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPNotSupported):
        return None  # the configuration is wrong: waiting will not fix it
    if isinstance(exc, aiosmtplib.SMTPException):
        return "the mail server"
    if isinstance(exc, OSError):  # refused, reset, timed out: ask the stack who was talking
        return _backend_in_traceback(exc)
    return None


# How often a watched backend that is down is asked whether it is back, and how long
# one answer may take.
CHECK_EVERY = 1.0
CHECK_TIMEOUT = 5.0


@dataclass
class _Outage:
    since: float  # monotonic
    failures: int = 0
    checking: asyncio.Task[None] | None = field(default=None, repr=False)


class OutageLog:
    """The outages of the backends a process watches: one line when each begins, one
    when it ends.

    A worker meets a PostgreSQL outage everywhere at once: every send attempt, lease
    renewal and write of `sent`, the dispatcher's claims and its LISTEN, the sweep of
    enrolment intents, asyncpg's pool restoring its connection floor. A line for each
    was about 55 warnings a second, and a traceback from the pool every second or two.
    For a watched backend the first failure logs `outage.began` (the backend, where it
    was met, why); every later one goes to debug level under its caller's event; and a
    check (`watch`), asked every CHECK_EVERY seconds meanwhile, logs `outage.ended`
    (how long, how many failures) once the backend answers it. For a backend nobody
    watches (the mail server, whose outages a bulk page logs once per attempt),
    `failed` says False and the caller logs its own line.

    Each watcher has a watch of its own (`watch` returns the function that ends it): two
    workers in one process (tests run a second one) each watch PostgreSQL with their own
    pool, and one that stops leaves the other's watch, and its check, as they were. The
    outage ends when every watcher's check answers.
    """

    def __init__(self) -> None:
        self._checks: dict[str, list[Callable[[], Awaitable[object]]]] = {}
        self._down: dict[str, _Outage] = {}

    def watch(self, backend: str, check: Callable[[], Awaitable[object]]) -> Callable[[], None]:
        """Log `backend`'s outages by state; `check` succeeds once it is back (for this
        watcher). Returns the function that ends this watch (and no other)."""
        self._checks.setdefault(backend, []).append(check)
        ended = False

        def unwatch() -> None:
            nonlocal ended
            if not ended:
                ended = True
                self._unwatch(backend, check)

        return unwatch

    def _unwatch(self, backend: str, check: Callable[[], Awaitable[object]]) -> None:
        checks = self._checks.get(backend, [])
        for i, watched in enumerate(checks):
            if watched is check:
                del checks[i]
                break
        if checks:
            return  # another watcher's check goes on asking
        self._checks.pop(backend, None)
        outage = self._down.pop(backend, None)
        if outage is not None and outage.checking is not None:
            outage.checking.cancel()

    def is_down(self, backend: str) -> bool:
        return backend in self._down

    def failed(self, backend: str | None, event: str, reason: str, **fields: Any) -> bool:
        """Note a failure (`event`, why, and what the caller would log with it) met
        because `backend` is unavailable: whether it was logged here (the backend is
        watched); else the caller logs it."""
        if backend is None or backend not in self._checks:
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop to check on: the caller logs
            return False
        outage = self._down.get(backend)
        if outage is None:
            outage = self._down[backend] = _Outage(since=time.monotonic())
            outage.checking = asyncio.create_task(self._until_back(backend, outage))
            log.warning("outage.began", backend=backend, seen_in=event, reason=reason, **fields)
        else:
            log.debug(event, backend=backend, reason=reason, **fields)
        outage.failures += 1
        return True

    async def _until_back(self, backend: str, outage: _Outage) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            checks = list(self._checks.get(backend, ()))
            if not checks:
                return
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    for check in checks:
                        await check()
            except Exception as exc:
                log.debug("outage.check_failed", backend=backend, error=type(exc).__name__)
                continue
            break
        if self._down.get(backend) is outage:
            del self._down[backend]
        log.warning(
            "outage.ended",
            backend=backend,
            seconds=round(time.monotonic() - outage.since, 1),
            failures=outage.failures,
        )


# The process's outage log (the worker watches its PostgreSQL: `worker.running_worker`).
outage_log = OutageLog()


class QuietPoolLog(logging.Filter):
    """asyncpg's pool logs each failed attempt to restore its connection floor with the
    whole traceback ("Failed to restore the pool connection floor; retrying"): an
    outage goes to the outage log instead, or, where nobody watches PostgreSQL, stays
    one line with the reason and no traceback. Anything else is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        backend = outage_of(exc) if exc is not None else None
        if exc is None or backend is None:
            return True
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if outage_log.failed(backend, "asyncpg.pool", reason, message=record.getMessage()):
            return False
        record.msg, record.args = f"{record.getMessage()}: {reason}", None
        record.exc_info, record.exc_text = None, None
        return True


def quiet_pool_log() -> None:
    """Install `QuietPoolLog` on asyncpg's pool logger (once)."""
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, QuietPoolLog) for f in pool_log.filters):
        pool_log.addFilter(QuietPoolLog())
