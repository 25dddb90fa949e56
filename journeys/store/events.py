"""Contacts' events (`POST /events`), stored once per idempotency key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
    external_id: str | None = None  # the contact's, for an earlier event


async def store_contact_event(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID | None,
    external_id: str | None,
    name: str,
    data: dict[str, Any],
    idempotency_key: str | None,
) -> StoredEvent | None:
    """Store a contact's event once per idempotency key, for the dispatcher to deliver;
    None when there is no such contact. For a known key: the event stored earlier."""
    row = await pool.fetchrow(
        """
        WITH c AS (SELECT id FROM contacts WHERE id = $1 OR ($1 IS NULL AND external_id = $2))
        INSERT INTO contact_events (contact_id, name, data, idempotency_key)
        SELECT id, $3, $4, $5 FROM c
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, contact_id, name, data, at, true AS created
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
            """SELECT e.id, e.contact_id, e.name, e.data, e.at, false AS created, c.external_id
               FROM contact_events e JOIN contacts c ON c.id = e.contact_id
               WHERE e.idempotency_key = $1 AND e.kind = 'custom'""",
            idempotency_key,
        )
    return None if row is None else StoredEvent(**dict(row))


async def contact_event(pool: asyncpg.Pool, event_id: int) -> asyncpg.Record | None:
    """A `POST /events` event with its delivery state."""
    return await pool.fetchrow(
        """SELECT id, contact_id, name, data, at, delivered_at, delivered_to, entries,
                  attempts, last_error
           FROM contact_events WHERE id = $1 AND kind = 'custom'""",
        event_id,
    )
