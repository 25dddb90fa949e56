"""Telling an outage from a bug: which backend an exception says is unavailable.

The API answers an outage with 503 (`api.outages`), activities retry it with one
log line (`activities.retries`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import aiosmtplib
import asyncpg
from temporalio.service import RPCError, RPCStatusCode

T = TypeVar("T")


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
