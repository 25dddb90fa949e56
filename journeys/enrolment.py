"""Enrolling contacts into a journey: one Temporal workflow per (journey, contact)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog
from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from journeys import metrics
from journeys.definition import parse_duration
from journeys.models import JourneyInput, journey_workflow_id, run_search_attributes
from journeys.outages import bounded, outage_log, outage_of
from journeys.store.enrolments import (
    Intent,
    IntentDone,
    claim_stale_intents,
    done_intents,
    latest_enrolments,
    mark_intents,
    record_intents,
    record_refusals,
)
from journeys.store.journeys import PublishedJourney, get_journey
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from workflows.journey import JourneyWorkflow

log = structlog.get_logger()

# Starts in flight at once for one request; Temporal's frontend is the limit.
START_CONCURRENCY = 64
# The memo field naming the enrolment intent a run was started for.
MEMO_INTENT = "enrolment"


class Enrolment(BaseModel):
    contact_id: uuid.UUID
    workflow_id: str | None = Field(description="None when refused")
    run_id: str | None = Field(description="None when refused")
    version: int
    status: Literal["enrolled", "already_enrolled", "refused"]
    reason: str | None = Field(default=None, description="why the enrolment was refused")


async def start_participant(
    client: Client,
    task_queue: str,
    journey: PublishedJourney,
    contact_id: uuid.UUID,
    intent_id: uuid.UUID | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start the contact's run of `journey`; its memo names the enrolment intent.

    Raises `WorkflowAlreadyStartedError` (with the open run's id) when the
    contact is inside already; a run that has ended does not count.
    """
    start = client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(
            journey_key=journey.key,
            version=journey.version,
            contact_id=str(contact_id),
            definition=journey.definition,
        ),
        id=journey_workflow_id(journey.key, str(contact_id)),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        rpc_timeout=API_RPC_TIMEOUT,
        search_attributes=run_search_attributes(
            journey.key, journey.version, str(contact_id), journey.definition.start
        ),
        memo={MEMO_INTENT: str(intent_id)} if intent_id else None,
        static_summary=f"{journey.name} (v{journey.version}), participant {contact_id}",
    )
    return await bounded("Temporal", start, API_CALL_SECONDS)


async def enrol(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    journey: PublishedJourney,
    contact_ids: list[uuid.UUID],
    request_key: str | None = None,
    limit: asyncio.Semaphore | None = None,
    on_outcome: Callable[[uuid.UUID, str], None] | None = None,
) -> list[Enrolment]:
    """Start a run for each contact; a contact already in an open run keeps that run,
    and one the journey's re-entry rule keeps out is refused with the reason.

    Recorded intent: pending intents are written first (one statement), then the
    runs started, then the intents marked (one statement). An interruption
    anywhere (PostgreSQL or Temporal gone, the process killed) leaves pending
    intents that the same call made again, or the worker's sweep, finishes
    without a second run. Under a `request_key` (the caller's Idempotency-Key,
    an operation, an event) asking again answers what was done the first time.
    `limit` bounds the starts in flight (START_CONCURRENCY for this call alone).
    `on_outcome` hears each contact's status as soon as it is decided (a bulk
    operation's progress), once per contact.
    """
    contact_ids = list(dict.fromkeys(contact_ids))
    answered = (
        await done_intents(pool, journey.key, request_key, contact_ids) if request_key else {}
    )
    todo = [c for c in contact_ids if c not in answered]
    refused = await _refused_by_reentry(client, pool, journey, todo)
    if refused:
        await record_refusals(pool, journey.key, journey.version, refused, request_key)
        metrics.enrolments(journey.key, ["refused"] * len(refused))
    heard = on_outcome or (lambda _contact_id, _status: None)
    for contact_id, before in answered.items():
        heard(contact_id, before.state)
    for contact_id in refused:
        heard(contact_id, "refused")
    intents = await record_intents(
        pool, journey.key, journey.version, [c for c in todo if c not in refused], request_key
    )
    done = await finish_intents(
        client, pool, task_queue, intents, known=[journey], limit=limit, on_outcome=on_outcome
    )
    outcome = {d.contact_id: d for d in done} | answered
    for contact_id, reason in refused.items():
        outcome[contact_id] = IntentDone(
            None, contact_id, "refused", journey.version, reason=reason
        )
    for contact_id in contact_ids:
        if contact_id not in outcome:
            # Another call wrote its intent while this one wrote (one statement sees
            # neither its row nor, in its snapshot, the other's): that call enrols it.
            outcome[contact_id] = IntentDone(
                None,
                contact_id,
                "already_enrolled",
                journey.version,
                journey_workflow_id(journey.key, str(contact_id)),
                reason="being enrolled by another call at this moment",
            )
            heard(contact_id, "already_enrolled")
    return [
        Enrolment(
            contact_id=c,
            workflow_id=outcome[c].workflow_id,
            run_id=outcome[c].run_id,
            version=outcome[c].version,
            status=outcome[c].state,
            reason=outcome[c].reason,
        )
        for c in contact_ids
    ]


async def finish_intents(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    intents: list[Intent],
    known: Sequence[PublishedJourney] = (),
    limit: asyncio.Semaphore | None = None,
    on_outcome: Callable[[uuid.UUID, str], None] | None = None,
) -> list[IntentDone]:
    """Start the run of each pending intent (unless one already carries its id) and mark
    them all. Starts that failed leave their intents pending; the first failure is raised
    after the others were marked. `on_outcome` hears each intent's state once its run
    is started (or found)."""
    versions = {(j.key, j.version): j for j in known}
    limit = limit or asyncio.Semaphore(START_CONCURRENCY)

    async def version(intent: Intent) -> PublishedJourney:
        key = (intent.journey_key, intent.version)
        if key not in versions:
            found = await get_journey(pool, *key)
            if found is None:
                raise LookupError(f"journey {key[0]} v{key[1]} is not published")
            versions[key] = found
        return versions[key]

    async def finish(intent: Intent) -> IntentDone:
        journey = await version(intent)

        def done(state: str, workflow_id: str, run_id: str | None) -> IntentDone:
            return IntentDone(
                intent.id, intent.contact_id, state, intent.version, workflow_id, run_id or ""
            )

        async with limit:
            if not intent.fresh:
                # An interrupted call may have started this intent's run, which may have ended.
                run = await _run_of_intent(client, journey, intent)
                if run is not None:
                    return done("enrolled", *run)
            try:
                handle = await start_participant(
                    client, task_queue, journey, intent.contact_id, intent.id
                )
            except WorkflowAlreadyStartedError as exc:
                run = await _run_of_intent(client, journey, intent)
                if run is not None:
                    return done("enrolled", *run)
                return done("already_enrolled", exc.workflow_id, exc.run_id)
            return done("enrolled", handle.id, handle.result_run_id)

    async def heard(intent: Intent) -> IntentDone:
        done = await finish(intent)
        if on_outcome is not None:
            on_outcome(intent.contact_id, done.state)
        return done

    outcomes = await asyncio.gather(*(heard(i) for i in intents), return_exceptions=True)
    by_journey: dict[str, list[IntentDone]] = {}
    for intent, o in zip(intents, outcomes, strict=True):
        if not isinstance(o, BaseException):
            by_journey.setdefault(intent.journey_key, []).append(o)
    for journey_key, marks in by_journey.items():
        await mark_intents(pool, journey_key, marks)
        metrics.enrolments(journey_key, [mark.state for mark in marks])
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise failed[0]
    return [d for key, marks in by_journey.items() for d in await _kept_versions(pool, key, marks)]


async def _run_of_intent(
    client: Client, journey: PublishedJourney, intent: Intent
) -> tuple[str, str] | None:
    """(workflow id, run id) of the contact's latest run when its memo names `intent`."""
    workflow_id = journey_workflow_id(journey.key, str(intent.contact_id))
    description = await _latest_run(client, workflow_id)
    if description is None:
        return None
    memo = await description.memo()
    if memo.get(MEMO_INTENT) != str(intent.id):
        return None
    return workflow_id, description.run_id


async def _kept_versions(
    pool: asyncpg.Pool, journey_key: str, done: list[IntentDone]
) -> list[IntentDone]:
    """A contact that kept its open run is on that run's version, not the one asked for."""
    kept = [d.contact_id for d in done if d.state == "already_enrolled"]
    if not kept:
        return done
    rows = await latest_enrolments(pool, journey_key, kept)
    return [
        replace(d, version=rows[d.contact_id]["version"])
        if d.state == "already_enrolled"
        and d.contact_id in rows
        and rows[d.contact_id]["run_id"] == d.run_id
        else d
        for d in done
    ]


# How long a pending intent is left to its own call before the worker finishes it.
STALE_INTENT_SECONDS = 120.0
SWEEP_SECONDS = 10.0
# How long one worker's sweep holds the intents it took on (the others pass them by).
SWEEP_HOLD_SECONDS = 300.0


async def sweep_intents_forever(client: Client, pool: asyncpg.Pool, task_queue: str) -> None:
    """The worker's safety net for enrolments whose call was interrupted for good."""
    while True:
        try:
            finished = await sweep_intents(client, pool, task_queue, STALE_INTENT_SECONDS)
            if finished:
                log.info("enrolment.intents_finished", count=finished)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            if not outage_log.failed(outage_of(exc), "enrolment.sweep_failed", error):
                log.warning("enrolment.sweep_failed", error=error)
        await asyncio.sleep(SWEEP_SECONDS)


async def sweep_intents(
    client: Client, pool: asyncpg.Pool, task_queue: str, older_than: float = 30.0
) -> int:
    """Finish the pending intents that no call finished within `older_than` seconds
    (the caller was interrupted and did not ask again); how many were finished."""
    intents = await claim_stale_intents(pool, older_than, limit=1000, hold=SWEEP_HOLD_SECONDS)
    if intents:
        await finish_intents(client, pool, task_queue, intents)
    return len(intents)


async def _refused_by_reentry(
    client: Client, pool: asyncpg.Pool, journey: PublishedJourney, contact_ids: list[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Contacts the journey's re-entry rule keeps out, with the reason.

    A contact whose earlier run is still open is not refused: it keeps that run
    (`already_enrolled`), whatever the rule.
    """
    rule = journey.definition.reentry
    if rule.policy == "always":
        return {}
    earlier = await latest_enrolments(pool, journey.key, contact_ids)
    now = datetime.now(UTC)
    reasons: dict[uuid.UUID, str] = {}
    for contact_id, row in earlier.items():
        entered: datetime = row["enrolled_at"]
        if rule.policy == "once":
            reasons[contact_id] = (
                f"this journey is entered once; entered on {entered:%Y-%m-%d %H:%M} UTC"
            )
        elif rule.after is not None and entered + parse_duration(rule.after) > now:
            again = entered + parse_duration(rule.after)
            reasons[contact_id] = (
                f"entered on {entered:%Y-%m-%d %H:%M} UTC; "
                f"may enter again from {again:%Y-%m-%d %H:%M} UTC"
            )
    for contact_id in list(reasons):
        if await _run_is_open(client, earlier[contact_id]["workflow_id"]):
            del reasons[contact_id]
    return reasons


async def _run_is_open(client: Client, workflow_id: str) -> bool:
    description = await _latest_run(client, workflow_id)
    return description is not None and description.status == WorkflowExecutionStatus.RUNNING


async def _latest_run(client: Client, workflow_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await bounded(
            "Temporal",
            client.get_workflow_handle(workflow_id).describe(rpc_timeout=API_RPC_TIMEOUT),
            API_CALL_SECONDS,
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
