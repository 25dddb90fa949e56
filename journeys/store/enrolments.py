"""Which run each (journey, contact) is in."""

from __future__ import annotations

import uuid

import asyncpg

from journeys.store.journal import write_journal


async def record_enrolments(
    pool: asyncpg.Pool, rows: list[tuple[str, uuid.UUID, int, str, str]]
) -> None:
    """Remember which run each (journey, contact) is in: (key, contact, version, workflow, run).

    A new run also leaves a `journey_entered` line in the contact's journal (once
    per run, whatever the retries).
    """
    # One statement for the whole batch: a bulk enrolment of thousands is one round trip.
    columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) or [(), (), (), (), ()]
    await pool.execute(
        """
        WITH e AS (
            INSERT INTO enrolments (journey_key, contact_id, version, workflow_id, run_id)
            SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[])
            ON CONFLICT (journey_key, contact_id) DO UPDATE SET
                version = EXCLUDED.version, workflow_id = EXCLUDED.workflow_id,
                run_id = EXCLUDED.run_id, enrolled_at = now()
            RETURNING journey_key, contact_id, version, workflow_id, run_id)
        INSERT INTO contact_journal (contact_id, kind, title, journey_key, idempotency_key)
        SELECT e.contact_id, 'journey_entered',
               'Entered journey ' || j.name || ' (v' || e.version || ')', e.journey_key,
               'entered/' || e.workflow_id || '/' || e.run_id
        FROM e JOIN journeys j ON j.key = e.journey_key
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        *[list(c) for c in columns],
    )


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
) -> None:
    await pool.execute(
        """INSERT INTO contact_journal (contact_id, kind, title, journey_key, idempotency_key)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING""",
        contact_id,
        kind,
        title,
        journey_key,
        idempotency_key,
    )
