"""The dev SMTP sink's mailbox over HTTP (mounted only by `journeys dev`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import SettingsDep
from api.errors import NOT_FOUND_RESPONSE, not_found
from journeys.mailsink import list_mail, read_mail

router = APIRouter(prefix="/dev/mail", tags=["development"], responses=NOT_FOUND_RESPONSE)


@router.get("", summary="messages the local SMTP sink received, oldest first")
async def mailbox(
    settings: SettingsDep,
    to: Annotated[str | None, Query(description="only messages to this address (any case)")] = None,
    limit: Annotated[int | None, Query(ge=1, description="only the newest this many")] = None,
) -> list[dict[str, Any]]:
    assert settings.dev_mail_dir is not None
    # File reads: off the event loop. An empty `to` is no filter, as on the console page.
    wanted = to.strip() or None if to is not None else None
    return await asyncio.to_thread(list_mail, settings.dev_mail_dir, to=wanted, limit=limit)


@router.get("/{mail_id}", response_class=Response, summary="one message, raw RFC 822")
async def raw_mail(mail_id: str, settings: SettingsDep) -> Response:
    assert settings.dev_mail_dir is not None
    raw = read_mail(settings.dev_mail_dir, mail_id)
    if raw is None:
        raise not_found(f"no message {mail_id!r} in the sink")
    return Response(raw, media_type="message/rfc822")
