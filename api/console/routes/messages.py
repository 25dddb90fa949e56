"""The message log: every message, newest first, filtered by status, channel, journey
and recipient, 50 a page."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from api.console.pages import render
from api.console.session import Reader
from api.deps import PoolDep
from journeys.definition import KEY_PATTERN
from journeys.store.messages import LOG_STATUSES, message_log

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50
UNPROCESSABLE = 422  # (starlette renamed its constant; the number stays)
CHANNELS = ("email", "sms")


def _uuid(text: str, what: str) -> uuid.UUID | None:
    if not text.strip():
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        raise HTTPException(UNPROCESSABLE, f"{what} {text!r} is not a contact id") from None


@router.get("/messages", response_class=HTMLResponse)
async def messages_page(
    request: Request,
    caller: Reader,
    pool: PoolDep,
    status_: Annotated[
        str, Query(alias="status", pattern=f"^({'|'.join(('', *LOG_STATUSES))})$")
    ] = "",
    channel: Annotated[str, Query(pattern=f"^({'|'.join(('', *CHANNELS))})$")] = "",
    journey: Annotated[str, Query(pattern=f"^$|{KEY_PATTERN}")] = "",
    contact: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[datetime | None, Query(description="the page after this message")] = None,
    before_id: Annotated[uuid.UUID | None, Query()] = None,
) -> HTMLResponse:
    contact_id = _uuid(contact, "recipient")
    if (before is None) != (before_id is None):
        raise HTTPException(UNPROCESSABLE, "before and before_id go together")
    filters = {
        "status": status_,
        "channel": channel,
        "journey": journey,
        "contact": str(contact_id) if contact_id else "",
    }
    found = await message_log(
        pool,
        PAGE + 1,  # one more: is there an older page?
        status=status_ or None,
        channel=channel or None,
        journey_key=journey or None,
        contact_id=contact_id,
        before=(before, before_id) if before is not None and before_id is not None else None,
    )
    shown = found[:PAGE]
    kept = {k: v for k, v in filters.items() if v}
    older = None
    if len(found) > PAGE:
        last = shown[-1]
        older = "/console/messages?" + urlencode(
            {**kept, "before": last.created_at.isoformat(), "before_id": str(last.id)}
        )
    newest = "/console/messages" + ("?" + urlencode(kept) if kept else "")
    return render(
        request,
        "messages.html",
        caller=caller,
        section="messages",
        messages=shown,
        filters=filters,
        statuses=LOG_STATUSES,
        channels=CHANNELS,
        paged=before is not None,
        older=older,
        newest=newest,
    )
