"""Users: colleagues who own contacts and receive records and notifications."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from journeys.db import Executor


class User(BaseModel):
    key: str
    name: str
    email: str
    time_zone: str
    created_at: datetime


async def upsert_user(
    pool: asyncpg.Pool, key: str, name: str, email: str, time_zone: str
) -> tuple[User, bool]:
    row = await pool.fetchrow(
        """INSERT INTO users (key, name, email, time_zone) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email,
                                           time_zone = EXCLUDED.time_zone
           RETURNING *, (xmax = 0) AS created""",
        key,
        name,
        email,
        time_zone,
    )
    assert row is not None
    return User.model_validate(dict(row)), bool(row["created"])


async def get_user(pool: Executor, key: str) -> User | None:
    row = await pool.fetchrow("SELECT * FROM users WHERE key = $1", key)
    return User.model_validate(dict(row)) if row else None


async def list_users(pool: asyncpg.Pool) -> list[User]:
    return [
        User.model_validate(dict(r)) for r in await pool.fetch("SELECT * FROM users ORDER BY key")
    ]


async def missing_users(pool: asyncpg.Pool, keys: list[str]) -> list[str]:
    rows = await pool.fetch("SELECT key FROM users WHERE key = ANY($1::text[])", keys)
    found = {r["key"] for r in rows}
    return [k for k in keys if k not in found]
