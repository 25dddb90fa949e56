"""Enrolling contacts into a journey: one Temporal workflow per (journey, contact)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from journeys.definition import parse_duration
from journeys.models import (
    SA_JOURNEY,
    SA_PARTICIPANT,
    SA_STATUS,
    SA_STEP,
    SA_VERSION,
    JourneyInput,
    journey_workflow_id,
)
from journeys.outages import bounded
from journeys.store.enrolments import (
    get_enrolment,
    latest_enrolments,
    record_enrolments,
    write_journal_line,
)
from journeys.store.journeys import PublishedJourney
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from workflows.journey import JourneyWorkflow

# Starts in flight at once for one request; Temporal's frontend is the limit.
START_CONCURRENCY = 64


class Enrolment(BaseModel):
    contact_id: uuid.UUID
    workflow_id: str | None = Field(description="None when refused")
    run_id: str | None = Field(description="None when refused")
    version: int
    status: Literal["enrolled", "already_enrolled", "refused"]
    reason: str | None = Field(default=None, description="why the enrolment was refused")


def _search_attributes(journey: PublishedJourney, contact_id: uuid.UUID) -> TypedSearchAttributes:
    kw = SearchAttributeKey.for_keyword
    return TypedSearchAttributes(
        [
            SearchAttributePair(kw(SA_JOURNEY), journey.key),
            SearchAttributePair(kw(SA_VERSION), str(journey.version)),
            SearchAttributePair(kw(SA_PARTICIPANT), str(contact_id)),
            SearchAttributePair(kw(SA_STEP), journey.definition.start),
            SearchAttributePair(kw(SA_STATUS), "running"),
        ]
    )


async def start_participant(
    client: Client, task_queue: str, journey: PublishedJourney, contact_id: uuid.UUID
) -> WorkflowHandle[Any, Any]:
    """Start the contact's run of `journey`.

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
        search_attributes=_search_attributes(journey, contact_id),
        static_summary=f"{journey.name} (v{journey.version}), participant {contact_id}",
    )
    return await bounded("Temporal", start, API_CALL_SECONDS)


async def enrol(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    journey: PublishedJourney,
    contact_ids: list[uuid.UUID],
) -> list[Enrolment]:
    """Start a run for each contact; a contact already in an open run keeps that run,
    and one the journey's re-entry rule keeps out is refused with the reason."""
    limit = asyncio.Semaphore(START_CONCURRENCY)
    contact_ids = list(dict.fromkeys(contact_ids))
    refused = await _refused_by_reentry(client, pool, journey, contact_ids)
    contact_ids = [c for c in contact_ids if c not in refused]

    async def start(contact_id: uuid.UUID) -> tuple[uuid.UUID, str, str, bool]:
        async with limit:
            try:
                handle = await start_participant(client, task_queue, journey, contact_id)
            except WorkflowAlreadyStartedError as exc:
                return contact_id, exc.workflow_id, exc.run_id or "", False
        return contact_id, handle.id, handle.result_run_id or "", True

    outcomes = await asyncio.gather(*(start(c) for c in contact_ids), return_exceptions=True)
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    # Record the runs that did start even when others failed (Temporal went away
    # mid-call): the caller's retry finds them running and must find them here too.
    new = [(journey.key, c, journey.version, w, r) for c, w, r, started in results if started]
    if new:
        await record_enrolments(pool, new)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        raise failed[0]
    enrolments = []
    for contact_id, workflow_id, run_id, started in results:
        version = journey.version
        if not started:
            row = await get_enrolment(pool, journey.key, contact_id)
            if row is None:  # started by a call that failed before it could record it
                await record_enrolments(
                    pool, [(journey.key, contact_id, journey.version, workflow_id, run_id)]
                )
            version = row["version"] if row and row["run_id"] == run_id else version
        enrolments.append(
            Enrolment(
                contact_id=contact_id,
                workflow_id=workflow_id,
                run_id=run_id,
                version=version,
                status="enrolled" if started else "already_enrolled",
            )
        )
    for contact_id, reason in refused.items():
        enrolments.append(
            Enrolment(
                contact_id=contact_id,
                workflow_id=None,
                run_id=None,
                version=journey.version,
                status="refused",
                reason=reason,
            )
        )
        await write_journal_line(
            pool,
            contact_id,
            "journey_refused",
            f"Not entered in {journey.name}: {reason}",
            journey.key,
        )
    return enrolments


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
    try:
        description = await bounded(
            "Temporal",
            client.get_workflow_handle(workflow_id).describe(rpc_timeout=API_RPC_TIMEOUT),
            API_CALL_SECONDS,
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING
