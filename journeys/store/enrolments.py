"""Which run each (journey, contact) is in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from journeys.db import planned_for_call
from journeys.store.journal import write_journal


@dataclass(frozen=True)
class Intent:
    """A pending enrolment of one contact in one journey version."""

    id: uuid.UUID
    journey_key: str
    contact_id: uuid.UUID
    version: int
    # Written by this call: no run can carry its id yet, so no need to look for one.
    fresh: bool


@dataclass(frozen=True)
class IntentDone:
    """What became of an intent: `enrolled` in the run named, `already_enrolled` (the
    contact kept the open run named), or `refused` with the reason."""

    intent_id: uuid.UUID | None
    contact_id: uuid.UUID
    state: str
    version: int
    workflow_id: str | None = None
    run_id: str | None = None
    reason: str | None = None


async def record_intents(
    pool: asyncpg.Pool,
    journey_key: str,
    version: int,
    contact_ids: list[uuid.UUID],
    request_key: str | None,
) -> list[Intent]:
    """Write a pending intent for each contact, in one statement, and return every pending
    intent of these contacts in this journey: the new ones, and those an interrupted call
    left (a contact has one pending intent at most; whoever comes next finishes it).

    A contact already done under `request_key` gets no new intent: ask `done_intents`.
    """
    rows = await pool.fetch(
        """
        WITH new AS (
            INSERT INTO enrolment_intents (id, journey_key, contact_id, version, request_key)
            SELECT gen_random_uuid(), $1, c, $2, $4 FROM unnest($3::uuid[]) AS c
            ON CONFLICT DO NOTHING
            RETURNING id, contact_id, version)
        SELECT id, contact_id, version, true AS fresh FROM new
        UNION ALL
        SELECT id, contact_id, version, false FROM enrolment_intents
        WHERE journey_key = $1 AND contact_id = ANY($3::uuid[]) AND state = 'pending'
        """,
        journey_key,
        version,
        contact_ids,
        request_key,
    )
    return [Intent(r["id"], journey_key, r["contact_id"], r["version"], r["fresh"]) for r in rows]


async def done_intents(
    pool: asyncpg.Pool, journey_key: str, request_key: str, contact_ids: list[uuid.UUID]
) -> dict[uuid.UUID, IntentDone]:
    """What was done already for these contacts under `request_key`."""
    rows = await pool.fetch(
        """SELECT * FROM enrolment_intents
           WHERE request_key = $1 AND journey_key = $2 AND contact_id = ANY($3::uuid[])
             AND state <> 'pending'""",
        request_key,
        journey_key,
        contact_ids,
    )
    return {r["contact_id"]: _done(r) for r in rows}


def _done(r: asyncpg.Record) -> IntentDone:
    return IntentDone(
        r["id"],
        r["contact_id"],
        r["state"],
        r["version"],
        r["workflow_id"],
        r["run_id"],
        r["reason"],
    )


async def record_refusals(
    pool: asyncpg.Pool,
    journey_key: str,
    version: int,
    reasons: dict[uuid.UUID, str],
    request_key: str | None,
) -> None:
    """Contacts the re-entry rule kept out: a journal line each, and, under a request
    key, a done intent so that asking again answers the same."""
    contacts, texts = list(reasons), list(reasons.values())
    await pool.execute(
        """
        WITH kept AS (
            INSERT INTO enrolment_intents (id, journey_key, contact_id, version, request_key,
                                           state, reason, done_at)
            SELECT gen_random_uuid(), $1, c, $2, $5, 'refused', r, now()
            FROM unnest($3::uuid[], $4::text[]) AS t(c, r) WHERE $5::text IS NOT NULL
            ON CONFLICT DO NOTHING
            RETURNING contact_id AS c, reason AS r),
        -- Under a request key, only the first answer leaves a line.
        lines AS (
            SELECT c, r FROM kept
            UNION ALL SELECT c, r FROM unnest($3::uuid[], $4::text[]) AS t(c, r)
            WHERE $5::text IS NULL)
        INSERT INTO contact_journal (contact_id, kind, title, journey_key)
        SELECT c, 'journey_refused', 'Not entered in ' || j.name || ': ' || r, $1
        FROM lines JOIN journeys j ON j.key = $1
        """,
        journey_key,
        version,
        contacts,
        texts,
        request_key,
    )


async def mark_intents(pool: asyncpg.Pool, journey_key: str, done: list[IntentDone]) -> None:
    """Mark intents done, in one statement; a new run also becomes the contact's run in
    `enrolments` and leaves a `journey_entered` line in the journal (once per run,
    whatever the retries). Intents without a request key are deleted."""
    done = [d for d in done if d.intent_id is not None]
    async with planned_for_call(pool) as conn:
        await conn.execute(
            """
            WITH o AS (
                SELECT * FROM unnest($2::uuid[], $3::text[], $4::int[], $5::text[], $6::text[])
                    AS o(id, state, version, workflow_id, run_id)),
            kept AS (
                UPDATE enrolment_intents i
                SET state = o.state, version = o.version, workflow_id = o.workflow_id,
                    run_id = o.run_id, done_at = now()
                FROM o WHERE i.id = ANY($2::uuid[]) AND i.id = o.id AND i.request_key IS NOT NULL
                         AND i.state = 'pending'
                RETURNING i.contact_id, o.state, o.version, o.workflow_id, o.run_id),
            dropped AS (
                DELETE FROM enrolment_intents i USING o
                WHERE i.id = ANY($2::uuid[]) AND i.id = o.id AND i.request_key IS NULL
                RETURNING i.contact_id, o.state, o.version, o.workflow_id, o.run_id),
            started AS (
                SELECT * FROM kept WHERE state = 'enrolled'
                UNION ALL SELECT * FROM dropped WHERE state = 'enrolled'),
            e AS (
                INSERT INTO enrolments (journey_key, contact_id, version, workflow_id, run_id)
                SELECT $1, contact_id, version, workflow_id, run_id FROM started
                ON CONFLICT (journey_key, contact_id) DO UPDATE SET
                    version = EXCLUDED.version, workflow_id = EXCLUDED.workflow_id,
                    run_id = EXCLUDED.run_id, enrolled_at = now()
                WHERE enrolments.run_id IS DISTINCT FROM EXCLUDED.run_id
                RETURNING contact_id, version, workflow_id, run_id)
            INSERT INTO contact_journal (contact_id, kind, title, journey_key, idempotency_key)
            SELECT e.contact_id, 'journey_entered',
                   'Entered journey ' || j.name || ' (v' || e.version || ')', $1,
                   'entered/' || e.workflow_id || '/' || e.run_id
            FROM e JOIN journeys j ON j.key = $1
            ON CONFLICT (idempotency_key) DO NOTHING
            """,
            journey_key,
            [d.intent_id for d in done],
            [d.state for d in done],
            [d.version for d in done],
            [d.workflow_id for d in done],
            [d.run_id for d in done],
        )


async def claim_stale_intents(
    pool: asyncpg.Pool, older_than: float, limit: int, hold: float
) -> list[Intent]:
    """Pending intents nobody finished within `older_than` seconds (the call that wrote
    them was interrupted and not made again), taken on for `hold` seconds: the sweeps
    of other workers pass them by meanwhile."""
    rows = await pool.fetch(
        """UPDATE enrolment_intents SET swept_until = now() + make_interval(secs => $3)
           WHERE id IN (
               SELECT id FROM enrolment_intents
               WHERE state = 'pending' AND created_at < now() - make_interval(secs => $1)
                 AND (swept_until IS NULL OR swept_until < now())
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        older_than,
        limit,
        hold,
    )
    return [Intent(r["id"], r["journey_key"], r["contact_id"], r["version"], False) for r in rows]


async def get_enrolment(
    pool: asyncpg.Pool, key: str, contact_id: uuid.UUID
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM enrolments WHERE journey_key = $1 AND contact_id = $2", key, contact_id
    )


async def latest_enrolments(
    pool: asyncpg.Pool, key: str, contact_ids: list[uuid.UUID]
) -> dict[uuid.UUID, asyncpg.Record]:
    """The last enrolment of each of `contact_ids` that was ever enrolled in `key`."""
    rows = await pool.fetch(
        "SELECT * FROM enrolments WHERE journey_key = $1 AND contact_id = ANY($2::uuid[])",
        key,
        contact_ids,
    )
    return {r["contact_id"]: r for r in rows}


async def runs_of_contact(pool: asyncpg.Pool, contact_id: uuid.UUID) -> list[str]:
    """Workflow ids of the contact's latest run in each journey, and of its follow-ups."""
    rows = await pool.fetch(
        """SELECT workflow_id FROM enrolments WHERE contact_id = $1
           UNION ALL SELECT workflow_id FROM follow_up_runs WHERE contact_id = $1""",
        contact_id,
    )
    return [r["workflow_id"] for r in rows]


async def record_follow_up_run(
    pool: asyncpg.Pool,
    workflow_id: str,
    contact_id: uuid.UUID,
    journey_key: str,
    message_id: uuid.UUID,
    key: str,
    trigger: str,
    title: str,
) -> None:
    """Note a follow-up that fired, and its line in the dossier; once per run."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO follow_up_runs (workflow_id, contact_id, journey_key, message_id,
                                           follow_up_key, trigger)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workflow_id) DO NOTHING""",
            workflow_id,
            contact_id,
            journey_key,
            message_id,
            key,
            trigger,
        )
        await write_journal(
            conn, contact_id, "follow_up", title, journey_key, idempotency_key=workflow_id
        )


async def runs_watching_profile(pool: asyncpg.Pool, contact_id: uuid.UUID) -> list[str]:
    """Workflow ids of the contact's runs whose journey version has an exit_if."""
    rows = await pool.fetch(
        """SELECT e.workflow_id FROM enrolments e
           JOIN journey_versions v ON v.journey_key = e.journey_key AND v.version = e.version
           WHERE e.contact_id = $1 AND v.definition ? 'exit_if'""",
        contact_id,
    )
    return [r["workflow_id"] for r in rows]


async def write_journal_line(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID,
    kind: str,
    title: str,
    journey_key: str | None = None,
    idempotency_key: str | None = None,
    at: datetime | None = None,
) -> None:
    """One line of the contact's dossier, at `at` (now without it), once per key."""
    await pool.execute(
        """INSERT INTO contact_journal (contact_id, kind, title, journey_key, idempotency_key, at)
           VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()))
           ON CONFLICT (idempotency_key) DO NOTHING""",
        contact_id,
        kind,
        title,
        journey_key,
        idempotency_key,
        at,
    )


async def follow_ups_fired(
    pool: asyncpg.Pool, journey_key: str, contact_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The follow-ups that fired for the contact in the journey, with the message's step."""
    return await pool.fetch(
        """SELECT f.workflow_id, f.follow_up_key, f.trigger, f.fired_at, m.step
           FROM follow_up_runs f JOIN messages m ON m.id = f.message_id
           WHERE f.contact_id = $1 AND f.journey_key = $2 ORDER BY f.fired_at""",
        contact_id,
        journey_key,
    )


async def recent_enrolments(
    pool: asyncpg.Pool, journey_key: str, limit: int
) -> list[asyncpg.Record]:
    """The journey's latest enrolments, the newest first."""
    return await pool.fetch(
        """SELECT contact_id, version, workflow_id, enrolled_at FROM enrolments
           WHERE journey_key = $1 ORDER BY enrolled_at DESC LIMIT $2""",
        journey_key,
        limit,
    )


async def enrolments_of(pool: asyncpg.Pool, contact_id: uuid.UUID) -> list[asyncpg.Record]:
    """The contact's enrolments (its latest in each journey) with the journey's name,
    the newest first."""
    return await pool.fetch(
        """SELECT e.journey_key, j.name AS journey_name, e.version, e.workflow_id,
                  e.enrolled_at
           FROM enrolments e LEFT JOIN journeys j ON j.key = e.journey_key
           WHERE e.contact_id = $1 ORDER BY e.enrolled_at DESC""",
        contact_id,
    )
