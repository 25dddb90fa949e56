"""CRM records (activities, requests, sales), request assignment rules, script calls."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from journeys.db import Connection, Executor


@dataclass(frozen=True)
class NewRecord:
    idempotency_key: str
    kind: str  # activity | request | sale
    contact_id: uuid.UUID
    title: str
    record_type: str | None
    status: str | None
    details: dict[str, Any]
    journey_key: str
    step: str


@dataclass(frozen=True)
class Assignment:
    owner: str | None
    assigned_by: str
    due_at: datetime | None = None
    ends_at: datetime | None = None


async def create_record(
    pool: asyncpg.Pool,
    record: NewRecord,
    assign: Callable[[Connection], Awaitable[Assignment]],
) -> asyncpg.Record:
    """Insert the record once per idempotency key; `assign` (owner, due time) runs in
    the same transaction, so a retry neither advances a round robin nor books a
    second slot. Returns the row (the earlier one on a retry)."""
    async with pool.acquire() as conn, conn.transaction():
        earlier = await conn.fetchrow(
            "SELECT * FROM crm_records WHERE idempotency_key = $1", record.idempotency_key
        )
        if earlier is not None:
            return earlier
        chosen = await assign(conn)
        row = await conn.fetchrow(
            """
            INSERT INTO crm_records (id, idempotency_key, kind, contact_id, title, record_type,
                                     status, owner, assigned_by, due_at, ends_at, details,
                                     journey_key, step)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            RETURNING *
            """,
            uuid.uuid4(),
            record.idempotency_key,
            record.kind,
            record.contact_id,
            record.title,
            record.record_type,
            record.status,
            chosen.owner,
            chosen.assigned_by,
            chosen.due_at,
            chosen.ends_at,
            record.details,
            record.journey_key,
            record.step,
        )
        assert row is not None
        return row


async def next_in_rotation(conn: Connection, category: str) -> str | None:
    """The member whose turn it is for `category`, advancing the rule; None without one."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        UPDATE request_rules SET next_index = next_index + 1
        WHERE category = $1 AND cardinality(members) > 0
        RETURNING members[(next_index - 1) % cardinality(members) + 1]
        """,
        category,
    )


async def set_rotation(pool: asyncpg.Pool, category: str, members: list[str]) -> None:
    await pool.execute(
        """INSERT INTO request_rules (category, members) VALUES ($1, $2)
           ON CONFLICT (category) DO UPDATE SET members = EXCLUDED.members, next_index = 0""",
        category,
        members,
    )


async def lock_agenda(conn: Connection, user: str) -> list[tuple[datetime, datetime]]:
    """Lock `user`'s agenda for the transaction and return its busy intervals to come."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('agenda/' || $1))", user)
    rows = await conn.fetch(
        """SELECT due_at, ends_at FROM crm_records
           WHERE kind = 'activity' AND owner = $1 AND ends_at > now()""",
        user,
    )
    return [(r["due_at"], r["ends_at"]) for r in rows]


async def user_time_zone(conn: Executor, user: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT time_zone FROM users WHERE key = $1", user
    )


async def start_script_call(
    pool: asyncpg.Pool,
    idempotency_key: str,
    contact_id: uuid.UUID,
    url: str,
    journey_key: str,
    step: str,
) -> uuid.UUID:
    """The call's row (created on the first attempt), counting this attempt."""
    call_id = await pool.fetchval(
        """
        INSERT INTO script_calls (id, idempotency_key, contact_id, url, status, attempts,
                                  journey_key, step)
        VALUES ($1, $2, $3, $4, 'pending', 1, $5, $6)
        ON CONFLICT (idempotency_key) DO UPDATE SET attempts = script_calls.attempts + 1
        RETURNING id
        """,
        uuid.uuid4(),
        idempotency_key,
        contact_id,
        url,
        journey_key,
        step,
    )
    assert isinstance(call_id, uuid.UUID)
    return call_id


async def finish_script_call(
    pool: asyncpg.Pool,
    idempotency_key: str,
    status: str,
    response_status: int | None,
    error: str | None,
) -> None:
    """Record an attempt's outcome; `pending` while retries remain."""
    await pool.execute(
        """UPDATE script_calls SET status = $2, response_status = $3, error = $4,
                  finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
           WHERE idempotency_key = $1""",
        idempotency_key,
        status,
        response_status,
        error,
    )


async def give_up_script_call(pool: asyncpg.Pool, idempotency_key: str) -> None:
    await pool.execute(
        """UPDATE script_calls SET status = 'failed', finished_at = now()
           WHERE idempotency_key = $1""",
        idempotency_key,
    )
