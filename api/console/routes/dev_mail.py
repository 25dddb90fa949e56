"""Dev mail: what the local SMTP sink received (`journeys dev`, the tests), when the
API is configured with its folder. A mail's HTML is shown in a sandboxed frame: its
scripts never run, and its links do not navigate the console."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from api.console.pages import render
from api.console.session import Reader
from api.deps import SettingsDep
from journeys.mailsink import list_mail, read_mail
from journeys.settings import ApiSettings

router = APIRouter(prefix="/console", include_in_schema=False)

# The newest this many are listed (the sink keeps every message).
LISTED = 200


def _folder(settings: ApiSettings) -> Path:
    if settings.dev_mail_dir is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no local mail sink is configured")
    return settings.dev_mail_dir


def received_at(mail_id: str) -> datetime | None:
    """When the sink stored it: its id starts with the milliseconds since the epoch."""
    try:
        return datetime.fromtimestamp(int(mail_id[:13]) / 1000, UTC)
    except ValueError:
        return None


def _listing(folder: Path, to: str | None) -> tuple[list[dict[str, Any]], int]:
    """The newest LISTED messages (to `to`), newest first, and how many there are."""
    if to is None:
        mail, total = list_mail(folder, limit=LISTED), sum(1 for _ in folder.glob("*.eml"))
    else:
        found = list_mail(folder, to=to)
        mail, total = found[-LISTED:], len(found)
    mail.reverse()
    for item in mail:
        item["received"] = received_at(item["id"])
    return mail, total


@router.get("/dev-mail", response_class=HTMLResponse)
async def dev_mail_page(
    request: Request, caller: Reader, settings: SettingsDep, to: str = ""
) -> HTMLResponse:
    folder = _folder(settings)
    wanted = to.strip() or None
    mail, total = await asyncio.to_thread(_listing, folder, wanted)  # file reads: off the loop
    return render(
        request,
        "dev_mail.html",
        caller=caller,
        section="dev-mail",
        mail=mail,
        total=total,
        listed=LISTED,
        to=wanted or "",
        folder=str(folder),
    )


def _content(part: Any) -> str:
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset, broken encoding
        return str(part.get_payload(decode=True) or b"", "utf-8", "replace")


def mail_view(raw: bytes) -> dict[str, Any]:
    """Headers, the HTML and text parts and the attachments' names of a message."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    html_part = msg.get_body(("html",))
    text_part = msg.get_body(("plain",))
    return {
        "headers": [
            (name, str(msg.get(name, "")))
            for name in ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")
            if msg.get(name) is not None
        ],
        "subject": str(msg.get("Subject", "")),
        "html": _content(html_part) if html_part is not None else None,
        "text": _content(text_part) if text_part is not None else None,
        "attachments": [
            part.get_filename() or part.get_content_type() for part in msg.iter_attachments()
        ],
    }


@router.get("/dev-mail/{mail_id}", response_class=HTMLResponse)
async def dev_mail_message(
    request: Request, mail_id: str, caller: Reader, settings: SettingsDep
) -> HTMLResponse:
    raw = await asyncio.to_thread(read_mail, _folder(settings), mail_id)
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no message {mail_id!r} in the sink")
    return render(
        request,
        "dev_mail.html",
        caller=caller,
        section="dev-mail",
        mail_id=mail_id,
        received=received_at(mail_id),
        message=mail_view(raw),
    )
