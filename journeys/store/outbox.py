"""The event outbox: undelivered rows of `message_events` and `contact_events`.

A dispatcher claims a batch (`FOR UPDATE SKIP LOCKED`, so several share the work),
which moves each row's `next_attempt_at` a lease ahead; it then marks each row
delivered, or failed with a backoff. Table names below are constants, never input.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from journeys.db import Executor, planned_for_call

# A failed delivery is tried again after 1, 2, 4 ... seconds, at most this far apart.
MAX_BACKOFF_SECONDS = 60


def _claim(table: str, columns: str) -> str:
    return f"""
        UPDATE {table} e SET next_attempt_at = now() + $2::interval, attempts = e.attempts + 1
        WHERE e.id IN (SELECT id FROM {table}
                       WHERE delivered_at IS NULL AND next_attempt_at <= now()
                       ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING {columns}"""


_CLAIM_MESSAGE_EVENTS = f"""
    WITH claimed AS ({_claim("message_events", "e.id, e.message_id, e.kind, e.url, e.data, e.at")})
    SELECT c.*, m.workflow_id, m.step, m.contact_id, m.journey_key, m.journey_version,
           m.follow_up_path, m.channel, COALESCE(m.sent_at, m.created_at) AS listening_since
    FROM claimed c JOIN messages m ON m.id = c.message_id ORDER BY c.id"""

_CLAIM_CONTACT_EVENTS = f"""
    WITH claimed AS ({_claim("contact_events", "e.id, e.contact_id, e.kind, e.name, e.data, e.at")})
    SELECT * FROM claimed ORDER BY id"""


async def claim_message_events(
    pool: asyncpg.Pool, limit: int, lease: timedelta
) -> list[asyncpg.Record]:
    return await pool.fetch(_CLAIM_MESSAGE_EVENTS, limit, lease)


async def claim_contact_events(
    pool: asyncpg.Pool, limit: int, lease: timedelta
) -> list[asyncpg.Record]:
    return await pool.fetch(_CLAIM_CONTACT_EVENTS, limit, lease)


async def mark_message_events_delivered(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute(
        """UPDATE message_events SET delivered_at = now(), last_error = NULL
           WHERE id = ANY($1::bigint[])""",
        ids,
    )


async def mark_contact_event_delivered(
    pool: asyncpg.Pool, event_id: int, delivered_to: list[str], entries: list[dict[str, Any]]
) -> None:
    await pool.execute(
        """UPDATE contact_events SET delivered_at = now(), delivered_to = $2, entries = $3,
                                     last_error = NULL
           WHERE id = $1""",
        event_id,
        delivered_to,
        entries,
    )


async def mark_failed(pool: asyncpg.Pool, table: str, failures: dict[int, str]) -> None:
    """Put failed rows back for a later attempt, each with its error."""
    assert table in ("message_events", "contact_events")
    async with planned_for_call(pool) as conn:
        await conn.execute(
            f"""UPDATE {table} e SET last_error = f.error,
                   next_attempt_at = now() + make_interval(
                       secs => least({MAX_BACKOFF_SECONDS}, power(2, greatest(e.attempts - 1, 0))))
                FROM unnest($1::bigint[], $2::text[]) AS f(id, error)
                WHERE e.id = ANY($1::bigint[]) AND e.id = f.id""",
            list(failures),
            list(failures.values()),
        )


@dataclass(frozen=True)
class Backlog:
    """The undelivered rows of one outbox table: how many, how many of them failed at
    least once (waiting for their next attempt), and the age of the oldest by the
    database's clock (0 without any)."""

    source: str
    undelivered: int
    failing: int
    oldest_seconds: float


_BACKLOG = """
    SELECT {source} AS source, count(*) AS undelivered,
           count(*) FILTER (WHERE last_error IS NOT NULL) AS failing,
           COALESCE(extract(epoch FROM now() - min(at)), 0)::float8 AS oldest_seconds
    FROM {table} WHERE delivered_at IS NULL"""


async def backlog(db: Executor, timeout: float) -> list[Backlog]:
    """Both tables' backlogs, by the dispatcher's sources (`message`, `contact`). The
    scan covers the undelivered rows only (their partial index): small when the
    dispatcher keeps up, and bounded by `timeout` when it does not."""
    rows = await db.fetch(
        _BACKLOG.format(source="'message'", table="message_events")
        + " UNION ALL "
        + _BACKLOG.format(source="'contact'", table="contact_events"),
        timeout=timeout,
    )
    return [Backlog(**dict(row)) for row in rows]


async def queue_profile_change(
    db: Executor, contact_id: uuid.UUID, fields: list[str], values: dict[str, Any], created: bool
) -> None:
    """Queue a profile change for the dispatcher (exit_if checks, field-change entries)."""
    await db.execute(
        """INSERT INTO contact_events (contact_id, kind, name, data)
           VALUES ($1, 'profile_change', 'profile_change', $2)""",
        contact_id,
        {"fields": fields, "values": values, "created": created},
    )
