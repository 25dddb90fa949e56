"""Console sessions: a row per sign-in, ended by signing out (`api.console.session`)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg


async def start_session(pool: asyncpg.Pool, lasts: timedelta) -> uuid.UUID:
    """A new session's id. Sessions older than `lasts` are gone by then (their cookies
    have expired as well), so they are deleted here."""
    session_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "DELETE FROM console_sessions WHERE started_at < now() - $1::interval", lasts
        )
        await conn.execute("INSERT INTO console_sessions (id) VALUES ($1)", session_id)
    return session_id


async def session_is_open(pool: asyncpg.Pool, session_id: uuid.UUID) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT true FROM console_sessions WHERE id = $1 AND ended_at IS NULL", session_id
        )
    )


async def end_session(pool: asyncpg.Pool, session_id: uuid.UUID) -> None:
    await pool.execute(
        "UPDATE console_sessions SET ended_at = now() WHERE id = $1 AND ended_at IS NULL",
        session_id,
    )
