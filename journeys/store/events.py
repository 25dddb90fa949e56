"""Contacts' events (`POST /events`), stored once per idempotency key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class StoredEvent:
    id: int
    contact_id: uuid.UUID
    name: str
    data: dict[str, Any]
    at: datetime
    created: bool
    delivered_to: list[str] | None
    workflow_ids: list[str] = field(default_factory=list)  # to deliver to, when undelivered
    external_id: str | None = None  # the contact's, for an earlier event


async def store_contact_event(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID | None,
    external_id: str | None,
    name: str,
    data: dict[str, Any],
    idempotency_key: str | None,
) -> StoredEvent | None:
    """Store a contact's event once per idempotency key; None when there is no such contact.

    Returns the event (the earlier one for a known key) and the runs to deliver it to.
    """
    row = await pool.fetchrow(
        """
        WITH c AS (SELECT id FROM contacts WHERE id = $1 OR ($1 IS NULL AND external_id = $2))
        INSERT INTO contact_events (contact_id, name, data, idempotency_key)
        SELECT id, $3, $4, $5 FROM c
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, contact_id, name, data, at, delivered_to, true AS created
        """,
        contact_id,
        external_id,
        name,
        data,
        idempotency_key,
    )
    if row is None and idempotency_key is not None:
        # A separate statement: it sees a concurrent call's row once that has committed.
        row = await pool.fetchrow(
            """SELECT e.id, e.contact_id, e.name, e.data, e.at, e.delivered_to,
                      false AS created, c.external_id
               FROM contact_events e JOIN contacts c ON c.id = e.contact_id
               WHERE e.idempotency_key = $1""",
            idempotency_key,
        )
    if row is None:
        return None
    if row["delivered_to"] is not None:  # a retry of an event delivered already
        return StoredEvent(**dict(row))
    runs = await pool.fetch(
        "SELECT workflow_id FROM enrolments WHERE contact_id = $1", row["contact_id"]
    )
    return StoredEvent(**dict(row), workflow_ids=[r["workflow_id"] for r in runs])


async def finish_event_delivery(pool: asyncpg.Pool, event_id: int, delivered_to: list[str]) -> None:
    await pool.execute(
        "UPDATE contact_events SET delivered_at = now(), delivered_to = $2 WHERE id = $1",
        event_id,
        delivered_to,
    )
