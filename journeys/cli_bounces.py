"""`journeys bounces kept [--show ID]`: the bounce notices kept for inspection (forged,
unparseable, inconsistent, naming no message), through the API like `journeys keys`."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

from journeys.cli_enrol import CommandError, _detail


async def list_kept(http: httpx.AsyncClient, console: Console, limit: int) -> list[dict[str, Any]]:
    response = await http.get("/bounces/kept", params={"limit": limit})
    if response.status_code != 200:
        raise CommandError(f"the API answered {response.status_code}: {_detail(response)}")
    kept: list[dict[str, Any]] = response.json()
    if not kept:
        console.print("No kept notices: every mail at the bounce address recorded what it said.")
        return kept
    table = Table(
        title="Bounce notices kept for inspection (newest first, times in UTC)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in ("id", "received", "via", "reason", "subject", "message"):
        table.add_column(column, overflow="fold")
    for k in kept:
        table.add_row(
            str(k["id"]),
            datetime.fromisoformat(k["received_at"]).strftime("%Y-%m-%d %H:%M"),
            k["via"],
            k["reason"],
            k["subject"] or "-",
            k["message_id"] or "-",
        )
    console.print(table)
    console.print("The mail itself: journeys bounces kept --show ID")
    return kept


async def show_kept(http: httpx.AsyncClient, notice_id: int) -> bytes:
    response = await http.get(f"/bounces/kept/{notice_id}")
    if response.status_code != 200:
        raise CommandError(f"the API answered {response.status_code}: {_detail(response)}")
    sys.stdout.buffer.write(response.content)
    sys.stdout.flush()
    return response.content
