"""Recurring sends: the list with status and next run; one send with its schedule, next
run times and last runs, and Live / Stop.

The page shows what `GET /recurring-sends/{key}` answers, and Live / Stop is the API's
`PATCH /recurring-sends/{key}` with `{"status": ...}`: the same functions
(`api.routes.recurring`), so the Temporal Schedule follows at once and a refusal (a
selection that no longer excludes recent recipients, say) reads as the API's.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from temporalio.service import RPCError, RPCStatusCode

from api.console.pages import in_words, render, temporal_ui
from api.console.session import Reader, Writer
from api.deps import Caller, Key, PoolDep, SettingsDep, TemporalDep
from api.routes.recurring import (
    RecurringSendView,
    change_recurring_send,
    list_recurring_sends,
    read_recurring_send,
)
from journeys.recurring import RecurringPatch, next_runs

router = APIRouter(prefix="/console", include_in_schema=False)

# The run counts in the order a run goes through them (as `journeys recurring show`).
COUNTS = ("found", "deduplicated", "excluded", "sent", "skipped", "failed")
DONE = {
    "live": ("ok", "Live: the schedule runs it at the times below."),
    "stopped": ("ok", "Stopped: the schedule is paused, every setting kept. Live resumes it."),
    "ended": (
        "error",
        "Not live: its end date has passed, so it stays stopped. Change the end date "
        "(PATCH /recurring-sends/{key}) to send again.",
    ),
}


def _local(times: list[datetime], zone: str) -> list[tuple[datetime, str]]:
    """Each time with how it reads in the send's time zone."""
    tz = ZoneInfo(zone)
    return [(t, t.astimezone(tz).strftime("%a %Y-%m-%d %H:%M")) for t in times]


@router.get("/recurring-sends", response_class=HTMLResponse)
async def recurring_sends_page(
    request: Request, caller: Reader, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> HTMLResponse:
    sends = await list_recurring_sends(pool, client, settings)

    async def first_run(send: Any) -> tuple[datetime, str] | None:
        try:
            found = (await next_runs(client, send.key)).next_runs
        except RPCError as exc:  # its schedule is missing: the page still lists the rest
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return None
        return _local(found[:1], send.time_zone)[0] if found else None

    live = [send for send in sends if send.status == "live"]  # paused: no next run
    # Asked of Temporal together, not one schedule after the other.
    found = await asyncio.gather(*(first_run(send) for send in live))
    upcoming: dict[str, Any] = {send.key: at for send, at in zip(live, found, strict=True)}
    return render(
        request,
        "recurring_sends.html",
        caller=caller,
        section="recurring",
        sends=sends,
        upcoming=upcoming,
    )


async def _send_page(
    request: Request,
    caller: Caller,
    view: RecurringSendView,
    settings: SettingsDep,
    *,
    flashes: list[tuple[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    # In the Temporal web UI: the schedule, and each run found by its workflow id (ids
    # hold slashes, so encoded whole).
    ui = temporal_ui(settings)
    return render(
        request,
        "recurring_send.html",
        caller=caller,
        section="recurring",
        status_code=status_code,
        flashes=flashes or [],
        send=view,
        upcoming=_local(view.next_runs, view.time_zone),
        counts=COUNTS,
        run_url=lambda workflow_id: (
            f"{ui}/workflows?query={quote(f'WorkflowId={json.dumps(workflow_id)}', safe='')}"
        ),
        schedule_url=f"{ui}/schedules/{quote(view.schedule_id, safe='')}",
    )


@router.get("/recurring-sends/{key}", response_class=HTMLResponse)
async def recurring_send_page(
    request: Request,
    key: Key,
    caller: Reader,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    view = await read_recurring_send(key, pool, client, settings)
    done = DONE.get(request.query_params.get("done", ""))
    flashes = [(done[0], done[1].replace("{key}", key))] if done else []
    return await _send_page(request, caller, view, settings, flashes=flashes)


@router.post("/recurring-sends/{key}/status")
async def status_from_form(
    request: Request,
    key: Key,
    caller: Writer,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
    status: Annotated[str, Form(pattern="^(live|stopped)$")],
) -> Response:
    """Live or Stop: `PATCH /recurring-sends/{key}` with `{"status": ...}`."""
    try:
        patch = RecurringPatch.model_validate({"status": status})
        view = await change_recurring_send(key, patch, pool, client, settings)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise
        current = await read_recurring_send(key, pool, client, settings)
        word = "live" if status == "live" else "stopped"
        return await _send_page(
            request,
            caller,
            current,
            settings,
            flashes=[("error", f"Not {word}: {in_words(exc.detail)}")],
            status_code=exc.status_code,
        )
    done = "ended" if status == "live" and view.status != "live" else view.status
    return RedirectResponse(f"/console/recurring-sends/{key}?done={done}", status_code=303)
