"""The console: server-rendered pages at /console for marketers and operators.

Pages work without JavaScript; a small script only refreshes the counts on a
journey's graph. Signed in with an API key (`session`), served by the API process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.console.counts import CONCURRENT_COUNTS
from api.console.freshness import Freshness
from api.console.pages import in_words, render
from api.console.routes import ROUTERS
from api.console.session import SignInNeeded

PREFIX = "/console"


def is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    """To the sign-in form, and back here afterwards (GET pages only: a form posted
    without a session is not replayed)."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"{PREFIX}/sign-in"
    if request.method == "GET":
        target += f"?next={quote(back, safe='')}"
    reason = getattr(exc, "reason", None)
    if reason:
        target += ("&" if "?" in target else "?") + f"reason={quote(reason, safe='')}"
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status_code: int, detail: Any) -> HTMLResponse:
    """An error as a console page: the status and what is wrong, in words."""
    return render(
        request,
        "error.html",
        caller=None,
        status_code=status_code,
        status=status_code,
        detail=in_words(detail),
    )


def install(app: FastAPI) -> None:
    app.state.console_counts = Freshness()
    app.state.console_count_limit = asyncio.Semaphore(CONCURRENT_COUNTS)
    app.add_exception_handler(SignInNeeded, _sign_in_needed)
    static = Path(__file__).parent / "static"
    app.mount(f"{PREFIX}/static", StaticFiles(directory=static), name="console-static")
    for router in ROUTERS:
        app.include_router(router)
