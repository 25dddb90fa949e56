"""Which run each (journey, contact) is in."""

from __future__ import annotations

import uuid

import asyncpg


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
