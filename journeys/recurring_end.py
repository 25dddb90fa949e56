"""A recurring send past its end date is stopped: read by the API or met by a run, its
status is stored as `stopped` and its schedule paused (the spec kept, as for any stop)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import asyncpg
from temporalio.client import Client

from journeys.recurring import effective_status, sync_schedule
from journeys.store import recurring
from journeys.store.recurring import StoredSend


async def stop_when_ended(
    pool: asyncpg.Pool, client: Client, task_queue: str, stored: StoredSend, today: date
) -> StoredSend:
    """The send as of `today` (its local date)."""
    status = effective_status(stored.definition, stored.status, today)
    if status == stored.status:
        return stored
    stopped = stored.definition.model_copy(update={"status": status})
    await sync_schedule(client, task_queue, stopped, status)
    await recurring.set_status(pool, stopped.key, status)
    return replace(stored, definition=stopped, status=status)
