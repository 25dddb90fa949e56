"""Operations: bulk work with a frozen target set and its progress (all SQL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from journeys.store.queries import SelectionSql

# Errors kept per operation; the counts hold them all.
MAX_ERRORS = 100


@dataclass(frozen=True)
class Operation:
    id: uuid.UUID
    kind: str
    subject: dict[str, Any]
    status: str
    total: int | None
    done: int
    counts: dict[str, int]
    errors: list[dict[str, Any]]
    created_at: datetime
    finished_at: datetime | None


def _operation(row: asyncpg.Record) -> Operation:
    return Operation(
        id=row["id"],
        kind=row["kind"],
        subject=row["subject"],
        status=row["status"],
        total=row["total"],
        done=row["done"],
        counts=row["counts"],
        errors=row["errors"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


async def create_operation(
    pool: asyncpg.Pool, kind: str, subject: dict[str, Any], request_key: str | None
) -> tuple[Operation, bool]:
    """A new operation, or the one created earlier under `request_key`; and whether new."""
    row = await pool.fetchrow(
        """WITH new AS (
               INSERT INTO operations (id, kind, subject, request_key)
               VALUES ($1, $2, $3, $4) ON CONFLICT (request_key) DO NOTHING RETURNING *)
           SELECT *, true AS created FROM new
           UNION ALL SELECT *, false FROM operations WHERE request_key = $4""",
        uuid.uuid4(),
        kind,
        subject,
        request_key,
    )
    if row is None:  # the same key's row committed by another call during this statement
        row = await pool.fetchrow(
            "SELECT *, false AS created FROM operations WHERE request_key = $1", request_key
        )
    assert row is not None
    return _operation(row), bool(row["created"])


async def get_operation(pool: asyncpg.Pool, operation_id: uuid.UUID) -> Operation | None:
    row = await pool.fetchrow("SELECT * FROM operations WHERE id = $1", operation_id)
    return _operation(row) if row else None


async def delete_unstarted(pool: asyncpg.Pool, operation_id: uuid.UUID) -> None:
    """An operation whose workflow could not be started: nothing was done yet, and what
    pointed at it (a campaign action being generated) no longer does."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE campaign_actions SET operation_id = NULL WHERE operation_id = $1",
            operation_id,
        )
        await conn.execute(
            "DELETE FROM operations WHERE id = $1 AND frozen_at IS NULL", operation_id
        )


async def freeze_targets(
    pool: asyncpg.Pool, operation_id: uuid.UUID, members: SelectionSql, exclude: str = ""
) -> int:
    """Write the target set once (the selection's members now, less `exclude`, a
    condition over `c` without parameters of its own); returns its size. Freezing
    again returns the set written the first time."""
    n = len(members.args)
    async with pool.acquire() as conn, conn.transaction():
        frozen = await conn.fetchrow(
            "SELECT total, frozen_at FROM operations WHERE id = $1 FOR UPDATE", operation_id
        )
        if frozen is None:
            raise LookupError(f"operation {operation_id} does not exist")
        if frozen["frozen_at"] is not None:
            return int(frozen["total"])
        await conn.execute(
            f"""INSERT INTO operation_targets (operation_id, contact_id)
                SELECT ${n + 1}::uuid, c.id FROM contacts c
                WHERE ({members.where}) {f"AND NOT ({exclude})" if exclude else ""}""",
            *members.args,
            operation_id,
        )
        total = await conn.fetchval(
            "SELECT count(*) FROM operation_targets WHERE operation_id = $1", operation_id
        )
        await conn.execute(
            "UPDATE operations SET total = $2, frozen_at = now() WHERE id = $1",
            operation_id,
            total,
        )
    return int(total)


async def target_page(
    pool: asyncpg.Pool, operation_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    rows = await pool.fetch(
        """SELECT contact_id FROM operation_targets
           WHERE operation_id = $1 AND ($2::uuid IS NULL OR contact_id > $2)
           ORDER BY contact_id LIMIT $3""",
        operation_id,
        after,
        limit,
    )
    return [r["contact_id"] for r in rows]


# Progress only grows: an attempt that resumes from the last heartbeat counts again the
# targets of the pages it redoes (each answers what was done the first time), and the
# operation keeps saying what was done meanwhile. Per outcome, the larger count.
_GROWN = """done = GREATEST(done, $2),
    counts = (SELECT COALESCE(jsonb_object_agg(k, GREATEST(COALESCE((counts ->> k)::int, 0),
                                                           COALESCE(($3::jsonb ->> k)::int, 0))),
                              '{}'::jsonb)
              FROM (SELECT jsonb_object_keys(counts) UNION
                    SELECT jsonb_object_keys($3::jsonb)) AS keys(k))"""


async def note_progress(
    pool: asyncpg.Pool,
    operation_id: uuid.UUID,
    done: int,
    counts: dict[str, int],
    errors: list[dict[str, Any]],
) -> None:
    """Where a page left the operation: targets done so far, counts, and new errors."""
    await pool.execute(
        f"""UPDATE operations SET {_GROWN},
                errors = (SELECT COALESCE(jsonb_agg(e), '[]'::jsonb) FROM (
                    SELECT e FROM jsonb_array_elements(errors || $4::jsonb) e
                    LIMIT {MAX_ERRORS}) kept)
            WHERE id = $1""",
        operation_id,
        done,
        counts,
        errors,
    )


async def note_done(
    pool: asyncpg.Pool, operation_id: uuid.UUID, done: int, counts: dict[str, int]
) -> None:
    """The targets done so far and their outcomes, while pages are under way."""
    await pool.execute(
        f"UPDATE operations SET {_GROWN} WHERE id = $1 AND status = 'running'",
        operation_id,
        done,
        counts,
    )


async def finish_operation(
    pool: asyncpg.Pool,
    operation_id: uuid.UUID,
    status: str,
    counts: dict[str, int] | None = None,
    error: str | None = None,
) -> None:
    await pool.execute(
        """UPDATE operations SET status = $2, finished_at = now(),
               counts = COALESCE($3, counts),
               errors = errors || CASE WHEN $4::text IS NULL THEN '[]'::jsonb
                   ELSE jsonb_build_array(jsonb_build_object('reason', $4::text)) END,
               done = CASE WHEN $2 = 'completed' THEN COALESCE(total, done) ELSE done END
           WHERE id = $1""",
        operation_id,
        status,
        counts,
        error,
    )
