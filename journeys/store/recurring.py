"""Recurring sends, their runs and each run's frozen recipients (all SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg
import structlog

from journeys.db import Connection, Executor, connection_of, planned_for_call
from journeys.definition.conditions import Condition
from journeys.recurring import RecurringSendIn, exclusion_problem
from journeys.store.conditions_sql import compiler_for

log = structlog.get_logger(__name__)

# Outcomes a target ends with; `send` is a target not yet done.
TARGET_STATUSES = ("sent", "skipped", "excluded", "failed", "deduplicated")


@dataclass(frozen=True)
class StoredSend:
    definition: RecurringSendIn  # with the status as stored
    status: str
    message_journey: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> str:
        return self.definition.key


def _send(row: asyncpg.Record) -> StoredSend:
    definition = RecurringSendIn.model_validate({**row["definition"], "status": row["status"]})
    return StoredSend(
        definition, row["status"], row["message_journey"], row["created_at"], row["updated_at"]
    )


async def upsert_send(
    pool: asyncpg.Pool, send: RecurringSendIn, message_journey: str | None
) -> tuple[StoredSend, bool]:
    """Store the send (its status apart); whether it is new."""
    definition = send.model_dump(mode="json", exclude={"status"}, exclude_none=True)
    row = await pool.fetchrow(
        """INSERT INTO recurring_sends (key, name, definition, status, message_journey)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (key) DO UPDATE SET name = $2, definition = $3, status = $4,
                message_journey = $5, updated_at = now()
           RETURNING *, (xmax = 0) AS created""",
        send.key,
        send.name,
        definition,
        send.status,
        message_journey,
    )
    assert row is not None
    return _send(row), bool(row["created"])


async def get_send(pool: asyncpg.Pool, key: str) -> StoredSend | None:
    row = await pool.fetchrow("SELECT * FROM recurring_sends WHERE key = $1", key)
    return _send(row) if row else None


async def list_sends(pool: asyncpg.Pool) -> list[StoredSend]:
    return [_send(r) for r in await pool.fetch("SELECT * FROM recurring_sends ORDER BY key")]


async def set_status(pool: asyncpg.Pool, key: str, status: str) -> None:
    await pool.execute(
        "UPDATE recurring_sends SET status = $2, updated_at = now() WHERE key = $1", key, status
    )


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    id: uuid.UUID
    recurring_key: str
    workflow_id: str
    kind: str
    at: datetime
    local_day: date
    status: str
    reason: str | None
    counts: dict[str, int]
    frozen: bool
    opened_at: datetime
    finished_at: datetime | None


def _run(row: asyncpg.Record) -> Run:
    return Run(
        row["id"],
        row["recurring_key"],
        row["workflow_id"],
        row["kind"],
        row["at"],
        row["local_day"],
        row["status"],
        row["reason"],
        row["counts"],
        row["frozen_at"] is not None,
        row["opened_at"],
        row["finished_at"],
    )


async def open_run(
    pool: asyncpg.Pool,
    key: str,
    workflow_id: str,
    temporal_run_id: str,
    kind: str,
    at: datetime,
    day: date,
) -> Run:
    """The run's row, written once per run whatever the retries."""
    row = await pool.fetchrow(
        """WITH new AS (
               INSERT INTO recurring_runs (id, recurring_key, workflow_id, temporal_run_id,
                                           kind, at, local_day)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (temporal_run_id) DO NOTHING RETURNING *)
           SELECT * FROM new
           UNION ALL SELECT * FROM recurring_runs WHERE temporal_run_id = $4""",
        uuid.uuid4(),
        key,
        workflow_id,
        temporal_run_id,
        kind,
        at,
        day,
    )
    assert row is not None
    return _run(row)


async def get_run(pool: asyncpg.Pool, run_id: uuid.UUID) -> Run | None:
    row = await pool.fetchrow("SELECT * FROM recurring_runs WHERE id = $1", run_id)
    return _run(row) if row else None


async def last_runs(pool: asyncpg.Pool, key: str, limit: int = 10) -> list[Run]:
    rows = await pool.fetch(
        "SELECT * FROM recurring_runs WHERE recurring_key = $1 ORDER BY opened_at DESC LIMIT $2",
        key,
        limit,
    )
    return [_run(r) for r in rows]


# Targets of a run from which the table is analysed once they are written.
ANALYZE_FROM = 1000


async def freeze_run(
    pool: Executor,
    run_id: uuid.UUID,
    found_sql: str,
    args: Sequence[object],
    *,
    dedupe: bool,
) -> None:
    """Write the run's recipients once: `found_sql` selects (contact_id, record_id, address)
    with `args` as $1..$n. With `dedupe`, all but the first of an address are marked."""
    n = len(args)
    async with connection_of(pool) as conn:
        async with conn.transaction():
            frozen = await conn.fetchval(
                "SELECT frozen_at FROM recurring_runs WHERE id = $1 FOR UPDATE", run_id
            )
            if frozen is not None:
                return  # an earlier attempt froze it
            status = await conn.execute(
                f"""WITH found AS ({found_sql})
                    INSERT INTO recurring_targets (run_id, seq, contact_id, record_id, address,
                                                   status)
                    SELECT ${n + 1}::uuid,
                           (row_number() OVER (ORDER BY contact_id, record_id))::int,
                           contact_id, record_id, address,
                           CASE WHEN ${n + 2}::boolean AND address IS NOT NULL
                                     AND row_number() OVER (PARTITION BY address
                                                            ORDER BY contact_id, record_id) > 1
                                THEN 'deduplicated' ELSE 'send' END
                    FROM found""",
                *args,
                run_id,
                dedupe,
            )
            await conn.execute("UPDATE recurring_runs SET frozen_at = now() WHERE id = $1", run_id)
        if int(status.rsplit(" ", 1)[-1]) >= ANALYZE_FROM:
            await _analyze_targets(conn)


async def _analyze_targets(conn: Connection) -> None:
    """Statistics that know a large run's new targets: without them `target_page` was
    planned as a scan of everything left in the run and a sort, for each page of 200
    (20,000 rows read for the first page of a 20,000-target run, 19,800 for the
    next...). After the freeze has committed, and only if the table's lock comes
    quickly (another ANALYZE or an autovacuum holds it): it is worth a little, never
    a wait or a failed run."""
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL lock_timeout = '1s'")
            await conn.execute("ANALYZE recurring_targets")
    except asyncpg.PostgresError as exc:
        log.warning("recurring.analyze_skipped", error=str(exc)[:200])


@dataclass(frozen=True)
class Target:
    seq: int
    contact_id: uuid.UUID
    record_id: uuid.UUID | None


async def target_page(pool: Executor, run_id: uuid.UUID, after: int, limit: int) -> list[Target]:
    rows = await pool.fetch(
        """SELECT seq, contact_id, record_id FROM recurring_targets
           WHERE run_id = $1 AND seq > $2 AND status = 'send' ORDER BY seq LIMIT $3""",
        run_id,
        after,
        limit,
    )
    return [Target(r["seq"], r["contact_id"], r["record_id"]) for r in rows]


async def mark_targets(
    pool: Executor, run_id: uuid.UUID, outcomes: list[tuple[int, str, str | None]]
) -> None:
    """Record (seq, status, reason) for targets of the run, in one statement."""
    if not outcomes:
        return
    seqs, statuses, reasons = (list(x) for x in zip(*outcomes, strict=True))
    async with planned_for_call(pool) as conn:
        await conn.execute(
            """UPDATE recurring_targets t SET status = o.status, reason = o.reason
               FROM unnest($2::int[], $3::text[], $4::text[]) AS o (seq, status, reason)
               WHERE t.run_id = $1 AND t.seq = ANY($2::int[]) AND t.seq = o.seq""",
            run_id,
            seqs,
            statuses,
            reasons,
        )


async def sent_before(pool: asyncpg.Pool, keys: list[str], opened_at: datetime) -> set[str]:
    """Of these idempotency keys, those an earlier run of the same local day sent or
    decided: before this run was opened (the schedule starts a send's runs one after
    the other, so a key claimed since is this run's own, from an earlier attempt)."""
    rows = await pool.fetch(
        """SELECT idempotency_key FROM messages
           WHERE idempotency_key = ANY($1::text[]) AND created_at < $2""",
        keys,
        opened_at,
    )
    return {r["idempotency_key"] for r in rows}


async def run_counts(pool: asyncpg.Pool, run_id: uuid.UUID) -> dict[str, int]:
    """found, and how many targets ended each way (a target not done yet: `pending`)."""
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM recurring_targets WHERE run_id = $1 GROUP BY status",
        run_id,
    )
    counts = {status: 0 for status in TARGET_STATUSES}
    for r in rows:
        counts["pending" if r["status"] == "send" else r["status"]] = r["n"]
    counts["found"] = sum(r["n"] for r in rows)
    return counts


async def finish_run(
    pool: asyncpg.Pool, run_id: uuid.UUID, status: str, reason: str | None
) -> dict[str, int]:
    counts = await run_counts(pool, run_id)
    await pool.execute(
        """UPDATE recurring_runs SET status = $2, reason = $3, counts = $4, finished_at = now()
           WHERE id = $1""",
        run_id,
        status,
        reason,
        counts,
    )
    return counts


async def broken_exclusions(
    pool: asyncpg.Pool,
    default_time_zone: str,
    overrides: dict[str, Condition | None] | None = None,
    only: str | None = None,
) -> list[tuple[str, str]]:
    """(send, why) for each recurring send (or only `only`) whose selection does not
    exclude its recent recipients, with `overrides` standing in for stored queries (a
    selection being changed). Saving a send checks this; so do a selection's change
    and each run, so that editing the selection later cannot undo it."""
    compiler = await compiler_for(pool, default_time_zone, overrides)
    broken = []
    for send in await list_sends(pool):
        selection = send.definition.selection
        if send.definition.internal is not None or selection is None:
            continue
        if only is not None and send.key != only:
            continue
        problem = exclusion_problem(send.key, selection, compiler.selections)
        if problem is not None:
            broken.append((send.key, problem))
    return broken
