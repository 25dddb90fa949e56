"""The asyncpg pool, with jsonb columns read and written as Python objects.

Batch statements that update a table's rows named by a parameter (`jsonb_to_recordset
($1)`, `unnest($1, $2)`) run in `planned_for_call`, and also say `t.id = ANY($1)`.
asyncpg prepares its statements, and after five runs PostgreSQL may keep a generic
plan made for the table as it was then: on a fresh database, while the table was
nearly empty, that plan reads the whole table, and it goes on doing so as the table
grows (one bulk send: 4.5 ms a statement, 75% of PostgreSQL's time, at 20,000 rows).
A plan made for each call, which knows how many ids the array holds, reaches them
through the index (`tests/test_store_plans.py`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from journeys.outages import quiet_pool_log

# What a store function can run its statements on: the pool, or one connection
# (inside a caller's transaction).
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy
Connection = asyncpg.Connection | PoolConnectionProxy

# A server that accepts the connection but never answers must not hang a caller.
CONNECT_TIMEOUT_SECONDS = 5


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool.

    asyncpg's default reset runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per query made through the pool,
    measured at 7% of the worker's CPU in a recurring run. No code here leaves
    session state on a pooled connection (no SET, LISTEN, session advisory lock or
    cursor outside a transaction; the dispatcher listens on a connection of its
    own), and asyncpg still rolls back a transaction left open before this runs.
    """


@asynccontextmanager
async def planned_for_call(db: Executor) -> AsyncIterator[Connection]:
    """A transaction whose statements are planned for their parameters each time, not
    from a plan kept for the statement (see above). Three more round trips than the
    statement alone (BEGIN, SET, COMMIT): for batches, whose reads it saves."""
    async with connection_of(db) as conn:
        # Inside a caller's transaction this is a savepoint, whose end keeps a SET LOCAL
        # until the caller's transaction ends: the caller's setting is put back.
        before = await conn.fetchval("SHOW plan_cache_mode") if conn.is_in_transaction() else None
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            yield conn
        if before is not None:
            await conn.execute("SELECT set_config('plan_cache_mode', $1, true)", before)


@asynccontextmanager
async def connection_of(db: Executor) -> AsyncIterator[Connection]:
    """A connection of the pool `db`, or `db` itself when it is one."""
    if hasattr(db, "acquire"):  # a pool (or a test's stand-in for one)
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def create_pool(
    database_url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    command_timeout: float | None = 30,
) -> asyncpg.Pool:
    quiet_pool_log()  # its reconnection attempts during an outage, without tracebacks
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init,
        reset=_keep_session,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=command_timeout,
    )
    assert pool is not None
    return pool
