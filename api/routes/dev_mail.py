"""The dev SMTP sink's mailbox over HTTP (mounted only by `journeys dev`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import SettingsDep
from api.errors import NOT_FOUND_RESPONSE, not_found
from journeys.mailsink import list_mail, read_mail

router = APIRouter(prefix="/dev/mail", tags=["development"], responses=NOT_FOUND_RESPONSE)


@router.get("", summary="messages the local SMTP sink received")
async def mailbox(settings: SettingsDep) -> list[dict[str, Any]]:
    assert settings.dev_mail_dir is not None
    return list_mail(settings.dev_mail_dir)


@router.get("/{mail_id}", response_class=Response, summary="one message, raw RFC 822")
async def raw_mail(mail_id: str, settings: SettingsDep) -> Response:
    assert settings.dev_mail_dir is not None
    raw = read_mail(settings.dev_mail_dir, mail_id)
    if raw is None:
        raise not_found(f"no message {mail_id!r} in the sink")
    return Response(raw, media_type="message/rfc822")
