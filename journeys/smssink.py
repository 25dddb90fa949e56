"""The development SMS sink's mailbox: every message the dev provider endpoint
(`api/routes/dev_sms.py`, speaking the shape of `activities/twilio.py`) took,
kept as a JSON file for people (`GET /dev/sms`) and tests to read."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEV_ACCOUNT = "ACdev"
DEV_TOKEN = "devtoken"


def sink_url(api_base: str) -> str:
    """The SMS_URL that sends to the dev sink of the API at `api_base` (http://host:port)."""
    host = api_base.split("://", 1)[1].rstrip("/")
    return f"twilio+http://{DEV_ACCOUNT}:{DEV_TOKEN}@{host}/dev/sms"


def store_sms(folder: Path, to: str, sender: str, text: str, count: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    sid = f"SM{uuid.uuid4().hex}"
    record = {
        "id": sid,
        "to": to,
        "sender": sender,
        "text": text,
        "segments": count,
        "at": datetime.now(UTC).isoformat(),
    }
    name = f"{int(time.time() * 1000):013d}-{sid}"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(folder / f"{name}.json")  # readers never see half a message
    return record


def list_sms(folder: Path) -> list[dict[str, Any]]:
    """Every message the sink took, oldest first."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
