"""A journey that enters by selection has a Temporal Schedule (`entry/<journey>`) that
starts a `SelectionEntry` run every `every`; publishing keeps it in step with the
latest version (created, changed, or deleted when the entry is no longer a selection).
The web UI's Schedules page shows it, with its next runs."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from journeys.definition import JourneyDefinition, parse_duration
from journeys.definition.journey import SelectionEntry
from journeys.models import EntryInput, entry_schedule_id
from journeys.outages import bounded
from journeys.schedules import put_schedule
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from workflows.bulk import SelectionEntryWorkflow


def _schedule(definition: JourneyDefinition, entry: SelectionEntry, task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SelectionEntryWorkflow.run,
            EntryInput(journey_key=definition.key),
            id=entry_schedule_id(definition.key),
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=parse_duration(entry.every))]),
        # A run still enrolling when the next is due: the next waits for the one after.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            note=f"enters members of selection '{entry.selection}' in {definition.name}"
        ),
    )


async def sync_entry_schedule(
    client: Client, task_queue: str, definition: JourneyDefinition
) -> None:
    """Make the journey's entry schedule what its definition says."""
    handle = client.get_schedule_handle(entry_schedule_id(definition.key))
    entry = definition.entry
    if not isinstance(entry, SelectionEntry):
        try:
            await bounded("Temporal", handle.delete(rpc_timeout=API_RPC_TIMEOUT), API_CALL_SECONDS)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        return
    await put_schedule(client, handle.id, _schedule(definition, entry, task_queue))
