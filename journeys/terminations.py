"""Runs ended from outside: terminated by an operator (the web UI, the Temporal CLI)
or by Temporal itself (a command it refused). Such a run cannot note its own end, so
the product reads it from Temporal: the participant view says `terminated` with the
reason, and the contact's dossier gets a line for each, written when it is read."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecution
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError

from journeys.models import SA_JOURNEY, SA_PARTICIPANT
from journeys.outages import Unavailable, bounded
from journeys.store.enrolments import write_journal_line
from journeys.temporal import API_RPC_TIMEOUT

_JOURNEY = SearchAttributeKey.for_keyword(SA_JOURNEY)
# The dossier waits this long for Temporal at most; it answers from PostgreSQL anyway.
LOOK_SECONDS = 2.0
# Terminated runs of one contact looked at per dossier read (newest first).
LOOKED_AT = 20


async def termination_reason(client: Client, workflow_id: str, run_id: str | None) -> str:
    """The reason given with the run's termination (its last event), or a sentence
    saying none was given."""
    answer = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=ExecutionRef(workflow_id=workflow_id, run_id=run_id or ""),
            maximum_page_size=1,
        ),
        retry=True,
        timeout=API_RPC_TIMEOUT,
    )
    for event in answer.history.events:
        if event.HasField("workflow_execution_terminated_event_attributes"):
            reason = event.workflow_execution_terminated_event_attributes.reason
            return reason or "no reason given"
    return "no reason given"


def terminated_title(journey_key: str, reason: str) -> str:
    return f"Terminated in journey {journey_key}: {reason}"


async def note_terminated_runs(pool: asyncpg.Pool, client: Client, contact_id: uuid.UUID) -> None:
    """A dossier line (`journey_terminated`, at the moment it ended) for each of the
    contact's runs that was terminated and is still its participant's latest run (a
    reset terminates the run it replaces: no end of the participant), once per run.
    Runs noted before cost one query; Temporal not answering in time leaves the lines
    for a later read."""

    async def look() -> None:
        query = f"{SA_PARTICIPANT} = '{contact_id}' AND ExecutionStatus = 'Terminated'"
        runs = {
            _line_key(run): run
            async for run in client.list_workflows(
                query, limit=LOOKED_AT, rpc_timeout=API_RPC_TIMEOUT
            )
        }
        if not runs:
            return
        noted = await pool.fetch(
            "SELECT idempotency_key FROM contact_journal WHERE idempotency_key = ANY($1::text[])",
            list(runs),
        )
        for key in {row["idempotency_key"] for row in noted}:
            del runs[key]
        await asyncio.gather(*(note_if_latest(run) for run in runs.values()))

    async def note_if_latest(run: WorkflowExecution) -> None:
        latest = await client.get_workflow_handle(run.id).describe(rpc_timeout=API_RPC_TIMEOUT)
        if latest.run_id != run.run_id:
            return
        key = run.typed_search_attributes.get(_JOURNEY) or run.id.split("/")[1]
        reason = await termination_reason(client, run.id, run.run_id)
        await note_terminated_run(pool, contact_id, key, reason, run)

    try:
        await bounded("Temporal", look(), LOOK_SECONDS)
    except (Unavailable, RPCError):
        return


def _line_key(run: WorkflowExecution) -> str:
    return f"terminated/{run.id}/{run.run_id}"


async def note_terminated_run(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID,
    key: str,
    reason: str,
    run: WorkflowExecution,
) -> None:
    """The dossier line of one terminated run (once, whoever notices it first)."""
    await write_journal_line(
        pool,
        contact_id,
        "journey_terminated",
        terminated_title(key, reason),
        key,
        _line_key(run),
        at=run.close_time,
    )
