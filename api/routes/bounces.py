"""Bounce notices kept for inspection: mails that reached the bounce address and
recorded nothing (forged, unparseable, inconsistent, naming no message), with the
reason (`journeys.bounces`; `journeys bounces kept` lists them too)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import PoolDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.store.bounces import list_kept, read_kept

router = APIRouter(
    prefix="/bounces",
    tags=["bounces"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **OUTAGE_RESPONSE},
)

NOTICE_ID_MAX = 2**63 - 1


class KeptNoticeView(BaseModel):
    id: int
    received_at: datetime
    via: str = Field(description="smtp, lmtp (the listener) or imap (the mailbox poller)")
    envelope_to: list[str] = Field(description="the addresses it was delivered to")
    reason: str = Field(
        description="why nothing was recorded: forged, unparseable, inconsistent, or names"
        " no message, with the details"
    )
    message_id: uuid.UUID | None = Field(
        description="the message its bounce address names, when the signature verified"
    )
    subject: str | None
    size: int = Field(description="bytes; GET /bounces/kept/{id} answers the first MB")


@router.get("/kept", response_model=list[KeptNoticeView])
async def kept_notices(
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=NOTICE_ID_MAX, description="ids below this one")
    ] = None,
) -> list[KeptNoticeView]:
    """Kept notices, newest first (the next page: `before` the last id)."""
    return [KeptNoticeView(**k.__dict__) for k in await list_kept(pool, limit=limit, before=before)]


@router.get(
    "/kept/{notice_id}",
    response_class=Response,
    responses={
        200: {"content": {"message/rfc822": {}}, "description": "the mail as it came"},
        **NOT_FOUND_RESPONSE,
    },
)
async def kept_notice(
    notice_id: Annotated[int, Path(ge=1, le=NOTICE_ID_MAX)], pool: PoolDep
) -> Response:
    """The raw mail of a kept notice (its first MB)."""
    raw = await read_kept(pool, notice_id)
    if raw is None:
        raise not_found(f"no kept notice {notice_id}")
    return Response(raw, media_type="message/rfc822")
