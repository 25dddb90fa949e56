"""`journeys enrol KEY --selection S`: enrol a selection through the API, with a progress
bar that follows the operation until it ends."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# How often the operation is asked how far it is.
POLL_SECONDS = 0.5


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback."""


def api_client(api_url: str | None, data_dir: str) -> httpx.AsyncClient:
    """The API named by --api-url / JOURNEYS_API_URL (`journeys dev`'s by default), with the
    key from JOURNEYS_API_KEY or the one `journeys dev` keeps in its data folder."""
    url = api_url or os.environ.get("JOURNEYS_API_URL") or "http://127.0.0.1:8000"
    key = os.environ.get("JOURNEYS_API_KEY")
    stored = Path(data_dir) / "api-key"
    if not key and stored.exists():
        key = stored.read_text().strip()
    if not key:
        raise CommandError(f"set JOURNEYS_API_KEY (no key in {stored} either)")
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)


async def enrol_selection(
    http: httpx.AsyncClient, journey: str, selection: str, console: Console | None = None
) -> dict[str, Any]:
    """Start the operation (under an Idempotency-Key, so a retried call starts it once),
    follow it with a progress bar, print its counts; the operation as it ended."""
    console = console or Console()
    started = await http.post(
        f"/journeys/{journey}/enrolments",
        json={"selection": selection},
        headers={"Idempotency-Key": f"cli-{uuid.uuid4()}"},
    )
    if started.status_code != 202:
        raise CommandError(f"the API answered {started.status_code}: {_detail(started)}")
    operation_id = started.json()["operation_id"]
    with Progress(
        TextColumn(f"enrolling [bold]{selection}[/] in [bold]{journey}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("enrol", total=None)
        while True:
            response = await http.get(f"/operations/{operation_id}")
            if response.status_code != 200:
                raise CommandError(f"the API answered {response.status_code}: {_detail(response)}")
            op: dict[str, Any] = response.json()
            progress.update(task, total=op["total"], completed=op["done"])
            if op["status"] != "running":
                break
            await asyncio.sleep(POLL_SECONDS)
    console.print(f"operation {operation_id}: [bold]{op['status']}[/]")
    table = Table()
    table.add_column("outcome")
    table.add_column("contacts", justify="right")
    for outcome, count in sorted(op["counts"].items()):
        table.add_row(outcome, f"{count:,}")
    console.print(table)
    for error in op["errors"][:10]:
        console.print(f"  {error.get('contact_id', '')} {error.get('reason', '')}")
    if op["status"] == "failed":
        raise CommandError(f"the operation failed: see GET /operations/{operation_id}")
    return op
