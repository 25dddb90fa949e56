"""Temporal Schedules the product keeps in step with what it stores (a journey's
selection entry, a recurring send)."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from journeys.outages import bounded
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT


async def put_schedule(client: Client, schedule_id: str, schedule: Schedule) -> None:
    """Create the schedule, or make the existing one this (spec, action and state)."""
    try:
        await bounded(
            "Temporal",
            client.create_schedule(schedule_id, schedule, rpc_timeout=API_RPC_TIMEOUT),
            API_CALL_SECONDS,
        )
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        handle = client.get_schedule_handle(schedule_id)
        await bounded(
            "Temporal", handle.update(replace, rpc_timeout=API_RPC_TIMEOUT), API_CALL_SECONDS
        )
