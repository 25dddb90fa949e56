"""Rendering console pages: one Jinja environment over the package's templates.

The templates escape everything (autoescape), and each page gets the signed-in
caller, the form token and the navigation from `render`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from api.console.session import form_token
from api.deps import Caller
from journeys.settings import ApiSettings

env = Environment(
    loader=PackageLoader("api.console", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    """A time as people read it in a table: UTC, to the second."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


env.filters["when"] = _when

NAVIGATION = (
    ("journeys", "Journeys", "/console/journeys"),
    ("contacts", "Contacts", "/console/contacts"),
    ("messages", "Messages", "/console/messages"),
    ("campaigns", "Campaigns", "/console/campaigns"),
    ("recurring", "Recurring sends", "/console/recurring-sends"),
)


def in_words(detail: Any) -> str:
    """An error's detail as a sentence: a 422's problems joined by their messages."""
    if isinstance(detail, list | tuple):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


def temporal_ui(settings: ApiSettings) -> str:
    """The Temporal web UI's pages of the namespace."""
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace, safe='')}"


def run_in_temporal_ui(settings: ApiSettings, workflow_id: str, run_id: str) -> str:
    """A run's history in the web UI. Its route takes the workflow id as one path
    segment, slashes encoded: a raw `journey/<key>/<id>` is the UI's 404 (checked
    against the dev server's UI 2.54)."""
    run = f"{quote(workflow_id, safe='')}/{quote(run_id, safe='')}"
    return f"{temporal_ui(settings)}/workflows/{run}/history"


def _served(request: Request) -> list[tuple[str, str, str]]:
    """The sections of NAVIGATION the console's routers serve."""
    from api.console.routes import ROUTERS  # the routes import this module

    paths = {getattr(route, "path", None) for router in ROUTERS for route in router.routes}
    return [entry for entry in NAVIGATION if entry[2] in paths]


def render(
    request: Request,
    template: str,
    *,
    caller: Caller | None,
    section: str = "",
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    page = env.get_template(template).render(
        request=request,
        caller=caller,
        csrf=form_token(request) if caller else "",
        section=section,
        navigation=_served(request),
        dev_mail=request.app.state.settings.dev_mail_dir is not None,
        **context,
    )
    # Pages show live data: never from a cache, and never framed by another site.
    headers = {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'",
    }
    return HTMLResponse(page, status_code=status_code, headers=headers)
