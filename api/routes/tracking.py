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
from api.errors import NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.models import MessageEvent, MessageEventKind
from journeys.outages import outage_of
from journeys.settings import ApiSettings
from journeys.signals import deliver
from journeys.store.messages import record_message_event, record_unsubscribe
from journeys.tokens import verify
from workflows.journey import JourneyWorkflow

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


async def _track(
    pool: PoolDep,
    client: TemporalDep,
    payload: dict[str, Any],
    kind: MessageEventKind,
    url: str | None = None,
) -> None:
    """Store the hit and signal the journey. The person clicking gets their page
    whatever happens behind it, so an outage is one log line, never an error page."""
    message_id = uuid.UUID(payload["m"])
    try:
        row = await record_message_event(pool, message_id, kind, url)
    except Exception as exc:
        if outage_of(exc) is None:
            raise
        log.warning("tracking.not_stored", message_id=str(message_id), kind=kind, error=repr(exc))
        return
    if row is None:
        raise not_found("unknown link")
    event = MessageEvent(
        message_id=str(message_id), step=row["step"], kind=kind, url=url, at=datetime.now(UTC)
    )
    try:
        await deliver(client, row["workflow_id"], JourneyWorkflow.message_event, event)
    except Exception as exc:  # the hit is stored; the recipient still gets the page
        if outage_of(exc) is None:
            raise
        log.warning(
            "tracking.signal_failed", message_id=str(message_id), kind=kind, error=repr(exc)
        )


@router.get("/o/{token}", response_class=Response, summary="open pixel")
async def track_open(
    token: str, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> Response:
    payload = _payload(token, "o", settings)
    await _track(pool, client, payload, "opened")
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)


@router.get("/c/{token}", response_class=RedirectResponse, status_code=302, summary="tracked link")
async def track_click(
    token: str, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> RedirectResponse:
    payload = _payload(token, "c", settings)
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
