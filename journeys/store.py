"""Journey versions, enrolments and messages in PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from journeys.definition import JourneyDefinition


class PublishedJourney(BaseModel):
    key: str
    name: str
    version: int
    published_at: datetime
    definition: JourneyDefinition


async def publish(pool: asyncpg.Pool, defn: JourneyDefinition) -> PublishedJourney:
    """Store `defn` as the next immutable version of its journey."""
    async with pool.acquire() as conn, conn.transaction():
        # The upsert locks the journey row, so concurrent publishes get distinct versions.
        version = await conn.fetchval(
            """
            INSERT INTO journeys (key, name, latest_version) VALUES ($1, $2, 1)
            ON CONFLICT (key) DO UPDATE SET latest_version = journeys.latest_version + 1,
                                            name = EXCLUDED.name, updated_at = now()
            RETURNING latest_version
            """,
            defn.key,
            defn.name,
        )
        published_at = await conn.fetchval(
            """INSERT INTO journey_versions (journey_key, version, definition) VALUES ($1, $2, $3)
               RETURNING published_at""",
            defn.key,
            version,
            defn.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
    return PublishedJourney(
        key=defn.key, name=defn.name, version=version, published_at=published_at, definition=defn
    )


async def get_journey(
    pool: asyncpg.Pool, key: str, version: int | None = None
) -> PublishedJourney | None:
    """A published version of a journey; the latest when `version` is None."""
    row = await pool.fetchrow(
        """
        SELECT v.journey_key AS key, j.name, v.version, v.published_at, v.definition
        FROM journey_versions v JOIN journeys j ON j.key = v.journey_key
        WHERE v.journey_key = $1 AND v.version = COALESCE($2, j.latest_version)
        """,
        key,
        version,
    )
    return PublishedJourney.model_validate(dict(row)) if row else None


async def list_versions(pool: asyncpg.Pool, key: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT version, published_at FROM journey_versions
           WHERE journey_key = $1 ORDER BY version""",
        key,
    )
    return [dict(r) for r in rows]


async def record_enrolments(
    pool: asyncpg.Pool, rows: list[tuple[str, uuid.UUID, int, str, str]]
) -> None:
    """Remember which run each (journey, contact) is in: (key, contact, version, workflow, run)."""
    await pool.executemany(
        """
        INSERT INTO enrolments (journey_key, contact_id, version, workflow_id, run_id)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (journey_key, contact_id) DO UPDATE SET
            version = EXCLUDED.version, workflow_id = EXCLUDED.workflow_id,
            run_id = EXCLUDED.run_id, enrolled_at = now()
        """,
        rows,
    )


async def get_enrolment(
    pool: asyncpg.Pool, key: str, contact_id: uuid.UUID
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM enrolments WHERE journey_key = $1 AND contact_id = $2", key, contact_id
    )


class MessageEventView(BaseModel):
    kind: str = Field(description="opened, clicked or unsubscribed")
    url: str | None = None
    at: datetime


class MessageView(BaseModel):
    id: uuid.UUID
    step: str
    status: str = Field(description="sending, sent, skipped, rejected or failed")
    subject: str | None
    error: str | None = Field(description="why it was skipped, rejected or failed")
    created_at: datetime
    sent_at: datetime | None
    events: list[MessageEventView]


async def messages_of(pool: asyncpg.Pool, workflow_id: str) -> list[MessageView]:
    """The messages a participant's run sent, each with its opens and clicks."""
    rows = await pool.fetch(
        """
        SELECT m.id, m.step, m.status, m.subject, m.error, m.created_at, m.sent_at,
               COALESCE(json_agg(json_build_object('kind', e.kind, 'url', e.url, 'at', e.at)
                                 ORDER BY e.at) FILTER (WHERE e.id IS NOT NULL), '[]')::jsonb
                   AS events
        FROM messages m LEFT JOIN message_events e ON e.message_id = m.id
        WHERE m.workflow_id = $1
        GROUP BY m.id ORDER BY m.created_at
        """,
        workflow_id,
    )
    return [MessageView.model_validate(dict(r)) for r in rows]


async def record_message_event(
    pool: asyncpg.Pool, message_id: uuid.UUID, kind: str, url: str | None
) -> asyncpg.Record | None:
    """Store an open/click/unsubscribe; returns the message's workflow id, step and contact."""
    return await pool.fetchrow(
        """
        WITH m AS (SELECT id, workflow_id, step, contact_id FROM messages WHERE id = $1),
             e AS (INSERT INTO message_events (message_id, kind, url) SELECT id, $2, $3 FROM m)
        SELECT workflow_id, step, contact_id FROM m
        """,
        message_id,
        kind,
        url,
    )


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


async def record_unsubscribe(pool: asyncpg.Pool, message_id: uuid.UUID) -> bool:
    """Unsubscribe the message's contact; False when there is no such message.

    Idempotent: a second one-click POST (mail clients retry) records nothing new.
    """
    contact_id = await pool.fetchval(
        """
        WITH m AS (SELECT id, contact_id FROM messages WHERE id = $1),
             e AS (INSERT INTO message_events (message_id, kind)
                   SELECT id, 'unsubscribed' FROM m
                   ON CONFLICT (message_id) WHERE kind = 'unsubscribed' DO NOTHING),
             c AS (UPDATE contacts SET unsubscribed_at = now(), updated_at = now()
                   WHERE id = (SELECT contact_id FROM m) AND unsubscribed_at IS NULL)
        SELECT contact_id FROM m
        """,
        message_id,
    )
    return contact_id is not None
