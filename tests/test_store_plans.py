"""Batch statements read only the rows they are given, also once a table has grown.

asyncpg prepares statements, and PostgreSQL keeps a plan for a prepared statement
once it has run a few times. A batch that joins its table to rows unpacked from a
parameter was planned to read the whole table while the table was small, and went
on reading it as the table grew (a fresh database's first bulk send: 4.5 ms a
statement, most of PostgreSQL's time; journeys/db.py).

Each case runs the store function itself on a fresh connection, against a copy of
its table that shadows the real one (`pg_temp` comes first in the search path):
eight batches while the table holds 200 rows, then one more once it holds 20,000;
that last batch of 10 may read no more than a few rows per row given, as counted by
PostgreSQL's own statistics for the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from journeys.db import Connection, create_pool
from journeys.store import enrolments, messages, outbox, recurring
from tests.conftest import Stack

RUN = uuid.UUID(int=1)


@dataclass(frozen=True)
class Case:
    table: str
    fill: str  # $1: rows from, $2: rows to (inclusive)
    keys: str  # ten rows the batch is given
    batch: Callable[[Any, list[Any]], Awaitable[object]]


# Messages being sent, for both mark-sent cases.
MESSAGES = """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key,
                                journey_version, step, contact_id, status)
              SELECT gen_random_uuid(), 'k' || n, 'w', 'j', 1, 's', gen_random_uuid(),
                     'sending'
              FROM generate_series($1::int, $2::int) AS n"""

CASES = {
    "mark_messages_sent": Case(
        "messages",
        MESSAGES,
        "SELECT id FROM messages WHERE status = 'sending' LIMIT 10",
        lambda conn, ids: messages.mark_messages_sent(
            conn, [messages.Sent(i, "Hi", "<p@x>") for i in ids]
        ),
    ),
    # The journey path: one message a call (journeys/store/messages.py).
    "mark_message_sent": Case(
        "messages",
        MESSAGES,
        "SELECT id FROM messages WHERE status = 'sending' LIMIT 1",
        lambda conn, ids: messages.mark_messages_sent(
            conn, [messages.Sent(i, "Hi", "<p@x>") for i in ids]
        ),
    ),
    "mark_targets": Case(
        "recurring_targets",
        f"""INSERT INTO recurring_targets (run_id, seq, contact_id, status)
            SELECT '{RUN}', n, gen_random_uuid(), 'send' FROM generate_series($1::int, $2::int) n""",
        "SELECT seq FROM recurring_targets WHERE status = 'send' ORDER BY seq LIMIT 10",
        lambda conn, seqs: recurring.mark_targets(conn, RUN, [(s, "sent", None) for s in seqs]),
    ),
    "mark_intents": Case(
        "enrolment_intents",
        """INSERT INTO enrolment_intents (id, journey_key, contact_id, version, request_key)
           SELECT gen_random_uuid(), 'j', gen_random_uuid(), 1, 'r' || n
           FROM generate_series($1::int, $2::int) AS n""",
        "SELECT id FROM enrolment_intents WHERE state = 'pending' LIMIT 10",
        lambda conn, ids: enrolments.mark_intents(
            conn, "j", [enrolments.IntentDone(i, i, "refused", 1, reason="r") for i in ids]
        ),
    ),
    "mark_failed": Case(
        "message_events",
        """INSERT INTO message_events (message_id, kind)
           SELECT gen_random_uuid(), 'opened' FROM generate_series($1::int, $2::int)""",
        "SELECT id FROM message_events WHERE last_error IS NULL LIMIT 10",
        lambda conn, ids: outbox.mark_failed(conn, "message_events", {i: "x" for i in ids}),
    ),
}


async def _rows_read(conn: Connection, table: str) -> int:
    return int(
        await conn.fetchval(
            """SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
               FROM pg_stat_xact_all_tables WHERE relid = $1::regclass""",
            f"pg_temp.{table}",
        )
    )


@pytest.mark.parametrize("name", CASES)
async def test_a_batch_reads_only_its_rows_once_the_table_has_grown(
    stack: Stack, name: str
) -> None:
    case = CASES[name]
    pool = await create_pool(
        stack.settings.database_url, min_size=1, max_size=1
    )  # nothing cached yet
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"CREATE TEMP TABLE {case.table} (LIKE public.{case.table} INCLUDING ALL) "
                "ON COMMIT DROP"
            )
            await conn.execute(case.fill, 1, 200)
            for _ in range(8):
                await case.batch(conn, [r[0] for r in await conn.fetch(case.keys)])
            await conn.execute(case.fill, 201, 20_000)
            given = [r[0] for r in await conn.fetch(case.keys)]
            before = await _rows_read(conn, case.table)
            await case.batch(conn, given)
            read = await _rows_read(conn, case.table) - before
            assert read <= 3 * len(given), f"{read} rows read for a batch of {len(given)}"
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await pool.close()


class _Rollback(Exception):
    """Leaves nothing behind (the temporary tables go with the transaction)."""


async def test_paging_a_frozen_run_reads_a_page_per_page(stack: Stack) -> None:
    pool = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            for table in ("recurring_runs", "recurring_targets"):
                await conn.execute(
                    f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL) ON COMMIT DROP"
                )
            await conn.execute(
                """INSERT INTO recurring_runs (id, recurring_key, workflow_id, temporal_run_id,
                                               kind, at, local_day)
                   VALUES ($1, 'r', 'w', 't', 'run', now(), current_date)""",
                RUN,
            )
            await recurring.freeze_run(
                conn,
                RUN,
                """SELECT gen_random_uuid() AS contact_id, NULL::uuid AS record_id,
                          'a' || n AS address FROM generate_series(1, $1::int) AS n""",
                [20_000],
                dedupe=True,
            )
            after = 0
            for _ in range(8):
                before = await _rows_read(conn, "recurring_targets")
                page = await recurring.target_page(conn, RUN, after, 200)
                read = await _rows_read(conn, "recurring_targets") - before
                assert len(page) == 200 and read <= 2 * len(page), f"{read} rows for a page"
                await recurring.mark_targets(conn, RUN, [(t.seq, "sent", None) for t in page])
                after = page[-1].seq
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await pool.close()
