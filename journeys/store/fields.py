"""The declared types of free contact fields."""

from __future__ import annotations

import asyncpg

from journeys.db import Executor


async def field_types(pool: Executor) -> dict[str, str]:
    rows = await pool.fetch("SELECT name, type FROM contact_fields")
    return {r["name"]: r["type"] for r in rows}


async def declare_field(pool: asyncpg.Pool, name: str, type: str) -> tuple[str, bool]:
    """Declare `name` with `type`; returns the stored type and whether it is new.

    A field declared before keeps its type (the caller compares).
    """
    row = await pool.fetchrow(
        """WITH ins AS (INSERT INTO contact_fields (name, type) VALUES ($1, $2)
                        ON CONFLICT (name) DO NOTHING RETURNING type)
           SELECT type, true AS created FROM ins
           UNION ALL SELECT type, false FROM contact_fields WHERE name = $1
           LIMIT 1""",
        name,
        type,
    )
    assert row is not None
    return row["type"], bool(row["created"])
