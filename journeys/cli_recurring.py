"""`journeys recurring list | show KEY | pause KEY | resume KEY`: recurring sends through
the API, as tables. Pause sets the status to stopped (every setting kept, the
schedule paused); resume sets it live again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from journeys.cli_enrol import CommandError, _detail

COUNTS = ("found", "deduplicated", "excluded", "sent", "skipped", "failed")


async def _call(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    response = await http.request(method, path, **kw)
    if response.status_code != 200:
        raise CommandError(f"the API answered {response.status_code}: {_detail(response)}")
    return response.json()


async def list_sends(http: httpx.AsyncClient, console: Console) -> None:
    table = Table(title="Recurring sends")
    for column in ("key", "name", "status", "frequency", "times", "time zone"):
        table.add_column(column)
    for s in await _call(http, "GET", "/recurring-sends"):
        name = f"{s['name']} (internal)" if s["internal"] else s["name"]
        table.add_row(
            s["key"], name, s["status"], s["frequency"], ", ".join(s["times"]), s["time_zone"]
        )
    console.print(table)


def _when(send: dict[str, Any]) -> str:
    if send["frequency"] == "weekly":
        days = "weekly on " + ", ".join(send["weekdays"])
    elif send["frequency"] == "monthly":
        days = f"monthly on day {send['day_of_month']}"
    else:
        days = "daily"
    period = f"from {send['start_date']}" + (f" to {send['end_date']}" if send["end_date"] else "")
    return f"{days} at {', '.join(send['times'])} ({send['time_zone']}), {period}"


async def show_send(http: httpx.AsyncClient, key: str, console: Console) -> dict[str, Any]:
    send: dict[str, Any] = await _call(http, "GET", f"/recurring-sends/{key}")
    console.print(f"[bold]{send['name']}[/] ({send['key']}): [bold]{send['status']}[/]")
    console.print(f"  {_when(send)}")
    console.print(f"  schedule {send['schedule_id']}, dedupe {'on' if send['dedupe'] else 'off'}")
    upcoming = ", ".join(t for t in send["next_runs"][:5]) or "none (not live)"
    console.print(f"  next runs: {upcoming}")
    table = Table(title="Last runs")
    for column in ("due (UTC)", "kind", "status", "counts"):
        table.add_column(column, no_wrap=column != "counts")
    reasons = []
    for run in send["last_runs"]:
        due = datetime.fromisoformat(run["at"]).strftime("%Y-%m-%d %H:%M")
        # The counts that happened, in the order a run goes through them.
        counts = ", ".join(f"{c} {run['counts'][c]}" for c in COUNTS if run["counts"].get(c))
        table.add_row(due, run["kind"], run["status"], counts or "-")
        if run["reason"]:
            reasons.append(f"  {due} {run['status']}: {run['reason']}")
    console.print(table)
    for line in reasons:  # below the table: a reason is too long for a column
        console.print(line)
    return send


async def set_status(
    http: httpx.AsyncClient, key: str, status: str, console: Console
) -> dict[str, Any]:
    send: dict[str, Any] = await _call(
        http, "PATCH", f"/recurring-sends/{key}", json={"status": status}
    )
    console.print(f"{key}: [bold]{send['status']}[/]")
    return send
