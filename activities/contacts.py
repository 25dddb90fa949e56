"""Reading and changing the participant's profile."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.retries import quiet_outages
from journeys.contacts import Contact
from journeys.models import (
    ContactSnapshot,
    JournalInput,
    LoadContactInput,
    UpdateContactInput,
)
from journeys.store.contacts import get_contact
from journeys.store.journal import write_journal
from journeys.store.queries import contact_snapshot
from journeys.store.updates import apply_update


async def require_contact(pool: asyncpg.Pool, contact_id: str) -> Contact:
    """The participant's contact; its absence is not something a retry can fix."""
    contact = await get_contact(pool, uuid.UUID(contact_id))
    if contact is None:
        raise ApplicationError(f"contact {contact_id} does not exist", non_retryable=True)
    return contact


class ContactActivities:
    def __init__(self, pool: asyncpg.Pool, default_time_zone: str) -> None:
        self.pool = pool
        self.default_time_zone = default_time_zone

    @activity.defn(name="load_contact")
    async def load_contact(self, input: LoadContactInput) -> ContactSnapshot:
        snapshot = await contact_snapshot(
            self.pool, uuid.UUID(input.contact_id), input.memberships, self.default_time_zone
        )
        if snapshot is None:
            raise ApplicationError(f"contact {input.contact_id} does not exist", non_retryable=True)
        return snapshot

    @activity.defn(name="note_journal")
    @quiet_outages
    async def note_journal(self, input: JournalInput) -> None:
        await write_journal(
            self.pool,
            uuid.UUID(input.contact_id),
            input.kind,
            input.title,
            input.journey_key,
            input.step,
            input.idempotency_key,
        )

    @activity.defn(name="update_contact")
    @quiet_outages
    async def update_contact(self, input: UpdateContactInput) -> None:
        info = activity.info()
        key = input.idempotency_key or f"{info.workflow_run_id}/{info.activity_id}"
        try:
            outcome = await apply_update(
                self.pool,
                uuid.UUID(input.contact_id),
                input.set,
                input.ops,
                idempotency_key=f"update/{key}",
                title=f"Profile updated: {describe_changes(input.set, input.ops)}",
                journey_key=input.journey_key,
                step=input.step,
                default_time_zone=self.default_time_zone,
            )
        except (asyncpg.DataError, asyncpg.InvalidTextRepresentationError) as exc:
            # A counter holding text, say: the data needs fixing, not a retry.
            raise ApplicationError(
                f"step '{input.step}': the update does not fit the stored values: {exc}",
                non_retryable=True,
            ) from None
        if outcome == "no_contact":
            raise ApplicationError(
                f"step '{input.step}': contact {input.contact_id} does not exist",
                non_retryable=True,
            )


def describe_changes(values: dict[str, Any], ops: list[dict[str, Any]]) -> str:
    """`plan = pro, score +5, tags + vip, seen = now, old cleared` (for the dossier)."""
    words = {"increment": "+", "decrement": "-", "append": "+", "remove": "-"}
    parts = [f"{name} = {value}" for name, value in values.items()]
    for op in ops:
        name, kind, value = op["field"], op["op"], op.get("value")
        if kind == "set":
            parts.append(f"{name} = {value}")
        elif kind == "clear":
            parts.append(f"{name} cleared")
        elif kind == "set_now":
            parts.append(f"{name} = now")
        else:
            parts.append(
                f"{name} {words[kind]}{'' if kind in ('increment', 'decrement') else ' '}{value}"
            )
    return ", ".join(parts)
