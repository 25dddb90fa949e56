"""Public tracking endpoints: open pixel, click redirect, unsubscribe.

Each verifies its signed token first; a forged or altered token gets 404 and
records nothing. A genuine hit is stored (one insert) and answered at once; the
worker's dispatcher (`journeys.dispatch`) delivers it to the journey.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import HitsDep, PoolDep, SettingsDep
from api.errors import NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.settings import ApiSettings
from journeys.store.messages import record_unsubscribe
from journeys.tokens import verify

router = APIRouter(
    prefix="/t", tags=["tracking"], responses={**NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE}
)
log = structlog.get_logger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, max-age=0"}


def _payload(token: str, kind: str, settings: ApiSettings) -> dict[str, Any]:
    payload = verify(token, settings.secret.get_secret_value())
    if payload is None or payload.get("k") != kind:
        raise not_found("unknown link")
    try:
        uuid.UUID(str(payload.get("m")))
    except ValueError:
        raise not_found("unknown link") from None
    return payload


async def _track(hits: HitsDep, payload: dict[str, Any], kind: str, url: str | None = None) -> None:
    """Store the hit; the worker's dispatcher delivers it to the journey. The person
    clicking gets their page whatever happens behind it: while the database is away
    the hit waits in the API's memory (`api.hits`), never an error page."""
    if await hits.record(uuid.UUID(payload["m"]), kind, url) is False:
        raise not_found("unknown link")


@router.get("/o/{token}", response_class=Response, summary="open pixel")
async def track_open(token: str, hits: HitsDep, settings: SettingsDep) -> Response:
    payload = _payload(token, "o", settings)
    await _track(hits, payload, "opened")
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/c/{token}", response_class=RedirectResponse, status_code=302, summary="tracked link")
async def track_click(token: str, hits: HitsDep, settings: SettingsDep) -> RedirectResponse:
    payload = _payload(token, "c", settings)
    url = str(payload.get("u", ""))
    if not url.startswith(("http://", "https://")):
        raise not_found("unknown link")
    await _track(hits, payload, "clicked", url)
    return RedirectResponse(url, status_code=302, headers=NO_CACHE)


_PAGE = (
    "<!doctype html><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif'>{body}</body>"
)


@router.get("/u/{token}", response_class=HTMLResponse, summary="unsubscribe page")
async def unsubscribe_page(token: str, settings: SettingsDep) -> HTMLResponse:
    # GET only asks: link scanners follow links, and must not unsubscribe anyone.
    _payload(token, "u", settings)
    return HTMLResponse(
        _PAGE.format(
            title="Unsubscribe",
            body="<form method=post><p>Stop receiving these messages?</p>"
            "<button type=submit>Unsubscribe</button></form>",
        )
    )


@router.post("/u/{token}", response_class=HTMLResponse, summary="unsubscribe (RFC 8058 one-click)")
async def unsubscribe(token: str, pool: PoolDep, settings: SettingsDep) -> HTMLResponse:
    payload = _payload(token, "u", settings)
    if not await record_unsubscribe(pool, uuid.UUID(payload["m"])):
        raise not_found("unknown link")
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body="<p>You are unsubscribed.</p>"))
