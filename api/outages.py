"""A backend outage answers 503 with Retry-After, quickly, with one log line.

PostgreSQL or Temporal being down is not the caller's fault and not a bug:
the caller gets `503 {"detail": "<backend> is unavailable ..."}` and a
`Retry-After`, the log gets one line (not a traceback per request). A backend
that accepts connections but never answers is bounded by the client timeouts
(`journeys.db`, `journeys.temporal`) and, as the last resort, by a deadline on
the whole request.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from journeys.outages import OUTAGE_CANDIDATES, outage_of

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5
# Below the 10 s a caller may wait; the client timeouts inside are shorter still.
REQUEST_DEADLINE_SECONDS = 8.0


def unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _outage_handler(request: Request, exc: Exception) -> Response:
    backend = outage_of(exc)
    if backend is None:
        raise exc  # a genuine bug: the server error handler logs it with its traceback
    log.warning(
        "backend.unavailable",
        backend=backend,
        error=type(exc).__name__,
        method=request.method,
        path=request.url.path,
    )
    detail = f"{backend} is unavailable; try again in a few seconds"
    from api import console  # the console's pages import this module's neighbours

    if console.is_console(request):
        page = console.error_page(request, 503, detail)
        page.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return page
    return unavailable(detail)


# Bulk enrolment starts up to 10,000 runs in one request, which takes longer than
# any deadline; each start is bounded on its own (`journeys.enrolment`).
NO_DEADLINE = (re.compile(r"^/journeys/[^/]+/enrolments$"),)


class RequestDeadline:
    """Pure ASGI: a request that outlives the deadline gets a 503 instead of a hang.

    The last resort: every call to PostgreSQL and Temporal is bounded already.
    """

    def __init__(self, app: ASGIApp, seconds: float = REQUEST_DEADLINE_SECONDS) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(p.match(scope["path"]) for p in NO_DEADLINE):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds) as deadline:
                await self.app(scope, receive, tracked_send)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            log.warning("request.deadline", method=scope["method"], path=scope["path"])
            response = unavailable(
                "PostgreSQL or Temporal did not answer in time; try again in a few seconds"
            )
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    # What `outage_of` does not recognise as an outage is re-raised by the handler.
    for exc_type in OUTAGE_CANDIDATES:
        app.add_exception_handler(exc_type, _outage_handler)
    app.add_middleware(RequestDeadline)


OUTAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "PostgreSQL or Temporal is unavailable; retry after `Retry-After` seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                },
                "example": {"detail": "PostgreSQL is unavailable; try again in a few seconds"},
            }
        },
    }
}
