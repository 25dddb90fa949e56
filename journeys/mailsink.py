"""The development SMTP sink: a real SMTP server (aiosmtpd) that keeps every
message it receives as an .eml file, for people and tests to read."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_ID = re.compile(r"^[0-9]{13}-[0-9a-f]{32}$")


class _StoreHandler:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # So that the error path can be tried locally: bounce@..., bounce-42@... are refused
        # the way a real server refuses an unknown mailbox.
        if address.split("@", 1)[0].lower().startswith("bounce"):
            return f"550 5.1.1 <{address}>: no such mailbox (the dev sink refuses bounce*)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex}"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.rename(self.folder / f"{name}.eml")  # readers never see half a message
        return "250 Message accepted for delivery"


class MailSink:
    """`async with MailSink(folder, port=1025):` serves SMTP on localhost."""

    def __init__(self, folder: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.folder, self.host, self.port = folder, host, port
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> MailSink:
        # aiosmtpd logs every command of a session at info (RCPT TO:<address>); the
        # product logs no address, and the sink keeps what it receives anyway.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.folder.mkdir(parents=True, exist_ok=True)
        handler = _StoreHandler(self.folder)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="journeys-sink", data_size_limit=50 * 1024 * 1024),
            self.host,
            self.port,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def list_mail(
    folder: Path, *, to: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The stored messages, oldest first, with their main headers: all of them, or those
    to `to` (any case), or only the newest `limit` of those.

    Only the header block of each file is parsed (a full parse of every message took
    seconds once a bulk send had filled the sink), and with `limit` and no `to`, only
    the newest files are read at all: their names begin with the time they came in.
    """
    paths = sorted(folder.glob("*.eml"))
    if to is None and limit is not None:
        paths = paths[-limit:] if limit > 0 else []
    wanted = to.lower() if to is not None else None
    items = []
    for path in paths:
        item, recipients = _summary(path)
        if wanted is None or wanted in recipients:
            items.append(item)
    if limit is not None:
        items = items[-limit:] if limit > 0 else []
    return items


def _summary(path: Path) -> tuple[dict[str, Any], set[str]]:
    """A message's main headers, and its To addresses in lower case."""
    msg = BytesHeaderParser(policy=policy.default).parsebytes(_header_block(path))
    to = msg.get_all("To", [])
    summary = {
        "id": path.stem,
        "to": [str(a) for a in to],
        "from": str(msg.get("From", "")),
        "subject": str(msg.get("Subject", "")),
        "date": str(msg.get("Date", "")),
        "message_id": str(msg.get("Message-ID", "")),
    }
    recipients = {a.addr_spec.lower() for header in to for a in getattr(header, "addresses", ())}
    return summary, recipients


def _header_block(path: Path, chunk: int = 8192) -> bytes:
    """The file up to the blank line after its headers (all of it when there is none):
    a message's body, attachments included, is not read."""
    head = b""
    with path.open("rb") as file:
        while data := file.read(chunk):
            head += data
            end = head.find(b"\r\n\r\n", max(0, len(head) - len(data) - 3))
            if end >= 0:
                return head[: end + 4]
    return head


def read_mail(folder: Path, mail_id: str) -> bytes | None:
    """The raw RFC 822 message, or None when there is no such id."""
    if not _ID.match(mail_id):
        return None
    path = folder / f"{mail_id}.eml"
    return path.read_bytes() if path.exists() else None
