"""Telling an outage from a bug: which backend an exception says is unavailable.

The API answers an outage with 503 (`api.outages`), activities retry it with one
log line (`activities.retries`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import aiosmtplib
import asyncpg
from temporalio.service import RPCError, RPCStatusCode

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


def outage_of(exc: BaseException) -> str | None:
    """Which backend `exc` says is unavailable, or None when it is not an outage."""
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError  # shutting down, starting up
        | asyncpg.exceptions.InsufficientResourcesError,  # too many connections
    ):
        return "PostgreSQL"
    if isinstance(exc, RPCError):
        return "Temporal" if exc.status in _TEMPORAL_OUTAGE else None
    if isinstance(exc, RuntimeError) and str(exc).startswith("Failed client connect"):
        return "Temporal"  # the lazy client could not reach the server
    if isinstance(exc, aiosmtplib.SMTPException):
        return "the mail server"
    if isinstance(exc, OSError):  # refused, reset, timed out: ask the stack who was talking
        return _backend_in_traceback(exc)
    return None
