"""Journeys: the list with counts, a journey's graph with participants per step, its
participants, one participant, and publishing from the browser."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from temporalio.client import Client

from api.console.counts import (
    OUTCOMES,
    JourneyCounts,
    StepPlace,
    fired_counts,
    journey_counts,
    journey_runs,
    step_counts,
)
from api.console.freshness import Freshness
from api.console.graph import (
    StepCounts,
    follow_up_id,
    graph_svg_from_raw,
    journey_graph_svg,
    problems_by_step,
    step_path,
)
from api.console.pages import render, run_in_temporal_ui
from api.console.session import Reader, Writer
from api.deps import PoolDep, SettingsDep, TemporalDep
from api.route_keys import key_problems
from api.routes.journeys import JourneyKey, Version, participant_view
from journeys.definition import KEY_PATTERN, JourneyDefinition, Problem
from journeys.definition.journey import (
    ApiEntry,
    EventEntry,
    FieldChangeEntry,
    SelectionEntry,
)
from journeys.definition.limits import size_problems
from journeys.models import SA_PARTICIPANT, SA_STATUS, SA_STEP
from journeys.outages import bounded
from journeys.publishing import (
    NotPublishable,
    publish_definition,
    publish_warnings,
    publishing_problems,
)
from journeys.store.contacts import get_contact, get_contacts
from journeys.store.enrolments import follow_ups_fired, recent_enrolments
from journeys.store.journeys import PublishedJourney, get_journey, list_journeys, list_versions
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT

router = APIRouter(prefix="/console", include_in_schema=False)

# How many participants a journey page lists (the newest, or those at a step).
LISTED = 50


@dataclass(frozen=True)
class Counting:
    """The numbers kept fresh, and the one limit on counts in flight (per API process)."""

    client: Client
    fresh: Freshness
    limit: asyncio.Semaphore


async def _counting(request: Request, client: TemporalDep) -> Counting:
    state = request.app.state
    return Counting(client, state.console_counts, state.console_count_limit)


CountingDep = Annotated[Counting, Depends(_counting)]
# How long a page waits for numbers that must be counted afresh (a journey nobody looked
# at for a minute): longer, and it answers with "…" in their place, filled in by the
# live refresh, or without scripts by the page reloading itself (a noscript refresh).
PAGE_WAIT_SECONDS = 0.1


@router.get("/journeys", response_class=HTMLResponse)
async def journeys_page(
    request: Request, caller: Reader, pool: PoolDep, counting: CountingDep
) -> HTMLResponse:
    journeys = await list_journeys(pool)

    async def summary(key: str) -> tuple[JourneyCounts, datetime] | None:
        return await counting.fresh.get_within(
            f"summary/{key}",
            lambda: journey_counts(counting.client, key, counting.limit),
            PAGE_WAIT_SECONDS,
        )

    found = await asyncio.gather(*(summary(j.key) for j in journeys))
    counts = {j.key: f[0] if f else None for j, f in zip(journeys, found, strict=True)}
    return render(
        request,
        "journeys.html",
        caller=caller,
        section="journeys",
        journeys=journeys,
        counts=counts,
        counted_at=min((f[1] for f in found if f), default=None),
        pending=any(f is None for f in found),
    )


def entry_text(defn: JourneyDefinition) -> str:
    """How participants enter, in words."""
    entry = defn.entry
    if isinstance(entry, ApiEntry):
        return "enrolled through the API"
    if isinstance(entry, EventEntry):
        return f"enters on the event {entry.name}"
    if isinstance(entry, FieldChangeEntry):
        if entry.to is None:
            return f"enters when {entry.field} changes"
        return f"enters when {entry.field} changes to {json.dumps(entry.to)}"
    assert isinstance(entry, SelectionEntry)
    return f"enters from the selection {entry.selection}, looked at every {entry.every}"


def graph_places(
    defn: JourneyDefinition,
) -> tuple[dict[str, StepPlace], dict[str, tuple[str, str]]]:
    """Where each node of the graph is counted in visibility, and each follow-up's
    (message step path, rule key): the path is how follow-up runs are found
    (`JourneyMessageStep`, `journeys.followups`)."""
    places: dict[str, StepPlace] = {}
    follow_ups: dict[str, tuple[str, str]] = {}

    def walk(
        steps: dict[str, Any],
        loc: tuple[str | int, ...],
        message_path: list[str],
        rule: tuple[str, str] | None,
    ) -> None:
        for sid, step in steps.items():
            node = step_path(loc, sid)
            places[node] = StepPlace(sid, *(rule or (None, None)))
            for i, follow_up in enumerate(getattr(step, "follow_ups", None) or []):
                path = "/".join([*message_path, sid])
                follow_ups[follow_up_id(loc, sid, i)] = (path, follow_up.key)
                walk(
                    follow_up.steps,
                    (*loc, "steps", sid, "follow_ups", i),
                    [*message_path, sid, follow_up.key],
                    (follow_up.key, path),
                )

    walk(defn.steps, (), [], None)
    return places, follow_ups


async def graph_counts(
    counting: Counting, journey: PublishedJourney
) -> tuple[dict[str, StepCounts], dict[str, int], JourneyCounts]:
    """The numbers on the graph and above it, asked from visibility all at once."""
    places, follow_ups = graph_places(journey.definition)
    client, key, limit = counting.client, journey.key, counting.limit
    counted, fired, summary = await asyncio.gather(
        step_counts(client, key, places, limit),
        fired_counts(client, key, follow_ups, limit),
        journey_counts(client, key, limit),
    )
    steps = {node: StepCounts(here, passed) for node, (here, passed) in counted.items()}
    return steps, fired, summary


def _graph_key(journey: PublishedJourney) -> str:
    return f"graph/{journey.key}/{journey.version}"


async def _graph_numbers(
    counting: Counting, journey: PublishedJourney
) -> tuple[tuple[dict[str, StepCounts], dict[str, int], JourneyCounts], datetime]:
    return await counting.fresh.get(_graph_key(journey), lambda: graph_counts(counting, journey))


async def _journey(pool: PoolDep, key: str, version: int | None = None) -> PublishedJourney:
    journey = await get_journey(pool, key, version)
    if journey is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"journey '{key}'{f' version {version}' if version else ''} does not exist",
        )
    return journey


async def _participants_at(client: TemporalDep, key: str, where: str) -> list[dict[str, Any]]:
    """Runs of the journey that `where` selects, the newest first (from visibility)."""
    found: list[dict[str, Any]] = []

    async def collect() -> None:
        async for run in client.list_workflows(
            f"{journey_runs(key)} AND {where}",  # newest first: visibility orders so
            limit=LISTED,
            rpc_timeout=API_RPC_TIMEOUT,
        ):
            attributes = run.search_attributes
            found.append(
                {
                    "contact_id": (attributes.get(SA_PARTICIPANT) or [""])[0],
                    "step": (attributes.get(SA_STEP) or [""])[0],
                    "status": (attributes.get(SA_STATUS) or [""])[0],
                    "since": run.start_time,
                }
            )

    await bounded("Temporal", collect(), API_CALL_SECONDS)
    return found


@router.get("/journeys/{key}", response_class=HTMLResponse)
async def journey_page(
    request: Request,
    key: JourneyKey,
    caller: Reader,
    pool: PoolDep,
    client: TemporalDep,
    counting: CountingDep,
    version: Version = None,
    step: Annotated[str | None, Query(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")] = None,
    status_: Annotated[
        str | None,
        Query(alias="status", pattern="^(running|completed|exited|removed|failed|terminated)$"),
    ] = None,
) -> HTMLResponse:
    journey = await _journey(pool, key, version)
    numbers = await counting.fresh.get_within(
        _graph_key(journey), lambda: graph_counts(counting, journey), PAGE_WAIT_SECONDS
    )
    counts: dict[str, StepCounts]
    fired: dict[str, int | None]
    summary: JourneyCounts | None
    if numbers is None:  # still being counted: "…" until the refresh
        places, follow_ups = graph_places(journey.definition)
        counts = {node: StepCounts(None, None) for node in places}
        fired, summary, counted_at = dict.fromkeys(follow_ups), None, None
    else:
        (counts, counted_fired, summary), counted_at = numbers
        fired = dict(counted_fired)
    svg = journey_graph_svg(
        journey.definition,
        counts=counts,
        follow_up_counts=fired,
        step_href=lambda node: f"/console/journeys/{key}?step={node}" if "/" not in node else None,
    )
    if step is not None:
        listed = await _participants_at(
            client, key, f"ExecutionStatus = 'Running' AND {SA_STEP} = '{step}'"
        )
        listing = f"Participants at step {step} now"
    elif status_ is not None:
        listed = await _participants_at(client, key, OUTCOMES[status_])
        listing = f"Participants whose run is {status_}"
    else:
        listed = [
            {"contact_id": str(r["contact_id"]), "since": r["enrolled_at"], "step": None}
            for r in await recent_enrolments(pool, key, LISTED)
        ]
        listing = "Latest enrolments"
    people = await get_contacts(
        pool, [uuid.UUID(p["contact_id"]) for p in listed if p["contact_id"]]
    )
    for p in listed:
        p["contact"] = people.get(uuid.UUID(p["contact_id"])) if p["contact_id"] else None
    # Just published from the form (?published=<this version>): what the API's answer
    # would have listed as warnings.
    warnings = []
    if request.query_params.get("published") == str(journey.version):
        warnings = [msg for _, msg in await publish_warnings(pool, journey.definition)]
    return render(
        request,
        "journey.html",
        caller=caller,
        section="journeys",
        journey=journey,
        entry=entry_text(journey.definition),
        versions=await list_versions(pool, key),
        summary=summary,
        graph=svg,
        counted_at=counted_at,
        listed=listed,
        listing=listing,
        step=step,
        warnings=warnings,
    )


@router.get("/journeys/{key}/counts.json")
async def journey_counts_json(
    key: JourneyKey, _: Reader, pool: PoolDep, counting: CountingDep, version: Version = None
) -> JSONResponse:
    """The numbers on the graph of the version shown, for the page's live refresh."""
    journey = await _journey(pool, key, version)
    (counts, fired, summary), counted_at = await _graph_numbers(counting, journey)
    return JSONResponse(
        {
            "steps": {n: {"here": c.here, "passed": c.passed} for n, c in counts.items()},
            "follow_ups": fired,
            "counted_at": counted_at.strftime("%H:%M:%S UTC"),
            "summary": {
                "running": summary.running,
                "completed": summary.completed,
                "exited": summary.exited,
                "removed": summary.removed,
                "failed": summary.failed,
                "terminated": summary.terminated,
            },
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/journeys/{key}/participants/{contact_id}", response_class=HTMLResponse)
async def participant_page(
    request: Request,
    key: JourneyKey,
    contact_id: uuid.UUID,
    caller: Reader,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> HTMLResponse:
    view = await participant_view(pool, client, key, contact_id)
    journey = await _journey(pool, key, view.version)
    contact = await get_contact(pool, contact_id)
    run_url = run_in_temporal_ui(settings, view.workflow_id, view.run_id)
    return render(
        request,
        "participant.html",
        caller=caller,
        section="journeys",
        journey=journey,
        view=view,
        contact=contact,
        follow_ups=await follow_ups_fired(pool, key, contact_id),
        run_url=run_url,
        graph=journey_graph_svg(journey.definition, counts=_path_taken(view)),
    )


def _path_taken(view: Any) -> dict[str, StepCounts]:
    """The participant's way through the graph: each step it went through, and where it
    is now (a running participant)."""
    taken = {visit.step: StepCounts(0, 1) for visit in view.history}
    if view.current_step and view.status == "running":
        taken[view.current_step] = StepCounts(1, 0)
    return taken


# --- publishing -------------------------------------------------------------------------


def _validation_problems(error: ValidationError) -> list[Problem]:
    return [(tuple(e["loc"]), e["msg"]) for e in error.errors()]


async def _publish_form(
    request: Request, caller: Reader | Writer, pool: PoolDep, text: str, **context: Any
) -> HTMLResponse:
    return render(
        request,
        "publish.html",
        caller=caller,
        section="journeys",
        text=text,
        **context,
    )


@router.get("/publish", response_class=HTMLResponse)
async def publish_page(
    request: Request,
    caller: Reader,
    pool: PoolDep,
    from_: Annotated[str | None, Query(alias="from", pattern=KEY_PATTERN)] = None,
) -> HTMLResponse:
    """The form: empty, or the latest definition of a journey to edit."""
    text = ""
    if from_ is not None:
        journey = await _journey(pool, from_)
        text = json.dumps(
            journey.definition.model_dump(mode="json", by_alias=True, exclude_none=True),
            indent=2,
            ensure_ascii=False,
        )
    return await _publish_form(request, caller, pool, text)


@router.get("/publish/schema.json")
async def definition_schema(_: Reader) -> JSONResponse:
    """The definition format's JSON Schema, for a signed-in browser (the API's
    `/journeys/schema` wants a bearer key)."""
    return JSONResponse(JourneyDefinition.model_json_schema(by_alias=True))


@router.post("/publish", response_class=HTMLResponse)
async def publish_from_form(
    request: Request,
    caller: Writer,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
    definition: Annotated[str, Form(max_length=8 * 1024 * 1024)] = "",
    action: Annotated[str, Form(pattern="^(check|publish)$")] = "check",
) -> Response:
    """Check or publish the pasted definition: the problems are placed on the steps of
    its graph (drawn from the JSON as it is, however broken), or it is published."""
    try:
        raw = json.loads(definition)
    except json.JSONDecodeError as exc:
        return await _publish_form(
            request,
            caller,
            pool,
            definition,
            problems=[(("line", exc.lineno, "column", exc.colno), f"not JSON: {exc.msg}")],
            status_code=422,
        )
    except RecursionError:
        return await _publish_form(
            request,
            caller,
            pool,
            definition,
            problems=[((), "the JSON is nested too deeply to be a journey")],
            status_code=422,
        )
    # The size limits first: a body made to be deep or long is not validated at all.
    problems: list[Problem] = size_problems(raw)
    too_large = bool(problems)
    defn: JourneyDefinition | None = None
    try:
        defn = None if problems else JourneyDefinition.model_validate(raw)
    except ValidationError as exc:
        problems = _validation_problems(exc)
    if defn is not None:
        # A key a route answers for (`schema`): the journey could not be read there.
        problems = key_problems(request.app, "journeys", defn.key, "journey")
        if not problems and action == "publish":
            try:
                journey, _ = await publish_definition(pool, client, settings.task_queue, defn)
            except NotPublishable as exc:
                problems = exc.problems
            else:
                return RedirectResponse(
                    f"/console/journeys/{journey.key}?published={journey.version}",
                    status_code=303,
                )
        elif not problems:
            problems = await publishing_problems(pool, defn)
    placed = problems_by_step(problems)
    drawable = isinstance(raw, dict) and not too_large
    graph = graph_svg_from_raw(raw, problems=placed) if drawable else None
    return await _publish_form(
        request,
        caller,
        pool,
        definition,
        problems=problems,
        graph=graph,
        checked=not problems,
        status_code=422 if problems else 200,
    )
