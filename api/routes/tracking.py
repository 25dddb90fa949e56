"""Public tracking endpoints: open pixel, click redirect, unsubscribe.

Each verifies its signed token first; a forged or altered token gets 404 and
records nothing. A genuine hit is stored, then delivered to the journey.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import PoolDep, SettingsDep, TemporalDep
from api.errors import not_found
from journeys.models import MessageEvent, MessageEventKind
from journeys.signals import deliver
from journeys.store import record_message_event
from journeys.tokens import verify

router = APIRouter(prefix="/t", tags=["tracking"])
log = structlog.get_logger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, max-age=0"}


def _payload(token: str, kind: str, secret: str) -> dict[str, Any]:
    payload = verify(token, secret)
    if payload is None or payload.get("k") != kind:
        raise not_found("unknown link")
    try:
        uuid.UUID(str(payload.get("m")))
    except ValueError:
        raise not_found("unknown link") from None
    return payload


async def _track(
    pool: PoolDep,
    client: TemporalDep,
    payload: dict[str, Any],
    kind: MessageEventKind,
    url: str | None = None,
) -> None:
    message_id = uuid.UUID(payload["m"])
    row = await record_message_event(pool, message_id, kind, url)
    if row is None:
        raise not_found("unknown link")
    event = MessageEvent(
        message_id=str(message_id), step=row["step"], kind=kind, url=url, at=datetime.now(UTC)
    )
    try:
        await deliver(client, row["workflow_id"], "message_event", event)
    except Exception:  # the hit is stored; the recipient still gets the page
        log.exception("tracking.signal_failed", message_id=str(message_id), kind=kind)


@router.get("/o/{token}", response_class=Response, summary="open pixel")
async def track_open(
    token: str, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> Response:
    payload = _payload(token, "o", settings.secret)
    await _track(pool, client, payload, "opened")
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/c/{token}", response_class=RedirectResponse, status_code=302, summary="tracked link")
async def track_click(
    token: str, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> RedirectResponse:
    payload = _payload(token, "c", settings.secret)
    url = str(payload.get("u", ""))
    if not url.startswith(("http://", "https://")):
        raise not_found("unknown link")
    await _track(pool, client, payload, "clicked", url)
    return RedirectResponse(url, status_code=302, headers=NO_CACHE)


_PAGE = (
    "<!doctype html><meta charset=utf-8><title>{title}</title>"
    "<body style='font-family:sans-serif'>{body}</body>"
)


@router.get("/u/{token}", response_class=HTMLResponse, summary="unsubscribe page")
async def unsubscribe_page(token: str, settings: SettingsDep) -> HTMLResponse:
    # GET only asks: link scanners follow links, and must not unsubscribe anyone.
    _payload(token, "u", settings.secret)
    return HTMLResponse(
        _PAGE.format(
            title="Unsubscribe",
            body="<form method=post><p>Stop receiving these messages?</p>"
            "<button type=submit>Unsubscribe</button></form>",
        )
    )


@router.post("/u/{token}", response_class=HTMLResponse, summary="unsubscribe (RFC 8058 one-click)")
async def unsubscribe(token: str, pool: PoolDep, settings: SettingsDep) -> HTMLResponse:
    payload = _payload(token, "u", settings.secret)
    row = await record_message_event(pool, uuid.UUID(payload["m"]), "unsubscribed", None)
    if row is None:
        raise not_found("unknown link")
    await pool.execute(
        "UPDATE contacts SET unsubscribed_at = COALESCE(unsubscribed_at, now()) WHERE id = $1",
        row["contact_id"],
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body="<p>You are unsubscribed.</p>"))
