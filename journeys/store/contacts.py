"""Contacts (profiles) in PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from journeys.contacts import Contact, ContactIn
from journeys.db import Executor
from journeys.definition import CONTACT_COLUMNS

# Whether the contact's address is suppressed (`store.delivery`); {c}: the contacts row.
BOUNCED = "EXISTS (SELECT 1 FROM suppressed_addresses s WHERE s.address = lower({c}.email))"


async def upsert_contact(
    pool: Executor, data: ContactIn
) -> tuple[Contact, bool, dict[str, Any] | None]:
    """Create the contact, or update the one with the same external id.

    Columns given replace what is stored; free fields are merged key by key.
    Returns the contact, whether it was created, and its profile as it was before
    (None when created), so a caller can tell which fields changed. (Every part of
    the statement sees the row as it was before it; two concurrent updates may both
    report the same change, which enrolment then takes once.)
    """
    given = data.model_fields_set
    row = await pool.fetchrow(
        f"""
        WITH before AS (SELECT to_jsonb(c) AS old FROM contacts c WHERE external_id = $2),
        up AS (
            INSERT INTO contacts (id, external_id, email, phone, first_name, last_name,
                                  time_zone, fields, owner, service_owner)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $14, $15)
            ON CONFLICT (external_id) DO UPDATE SET
                email = CASE WHEN $9 THEN EXCLUDED.email ELSE contacts.email END,
                phone = CASE WHEN $10 THEN EXCLUDED.phone ELSE contacts.phone END,
                first_name = CASE WHEN $11 THEN EXCLUDED.first_name
                                  ELSE contacts.first_name END,
                last_name = CASE WHEN $12 THEN EXCLUDED.last_name ELSE contacts.last_name END,
                time_zone = CASE WHEN $13 THEN EXCLUDED.time_zone ELSE contacts.time_zone END,
                owner = CASE WHEN $16 THEN EXCLUDED.owner ELSE contacts.owner END,
                service_owner = CASE WHEN $17 THEN EXCLUDED.service_owner
                                     ELSE contacts.service_owner END,
                fields = contacts.fields || EXCLUDED.fields,
                updated_at = now()
            RETURNING *, (xmax = 0) AS created)
        SELECT up.*, (SELECT old FROM before) AS before, {BOUNCED.format(c="up")} AS bounced
        FROM up
        """,
        uuid.uuid4(),
        data.external_id,
        data.email,
        data.phone,
        data.first_name,
        data.last_name,
        data.time_zone,
        data.fields,
        *(col in given for col in CONTACT_COLUMNS),
        data.owner,
        data.service_owner,
        "owner" in given,
        "service_owner" in given,
    )
    assert row is not None
    contact = Contact.model_validate(dict(row))
    before = None
    if not row["created"] and row["before"] is not None:
        old = dict(row["before"])
        before = {**old.pop("fields", {}), **old}
    return contact, bool(row["created"]), before


async def get_contact(
    pool: asyncpg.Pool | asyncpg.Connection, contact_id: uuid.UUID
) -> Contact | None:
    return (await get_contacts(pool, [contact_id])).get(contact_id)


async def get_contacts(
    pool: asyncpg.Pool | asyncpg.Connection, ids: list[uuid.UUID]
) -> dict[uuid.UUID, Contact]:
    """The contacts of `ids` that exist, by id, in one query."""
    rows = await pool.fetch(
        f"""SELECT c.*, {BOUNCED.format(c="c")} AS bounced FROM contacts c
            WHERE c.id = ANY($1::uuid[])""",
        ids,
    )
    return {row["id"]: Contact.model_validate(dict(row)) for row in rows}


async def internal_testers(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `ids` whose field `internal_tester` is true."""
    rows = await pool.fetch(
        """SELECT id FROM contacts WHERE id = ANY($1::uuid[])
           AND fields -> 'internal_tester' = 'true'::jsonb""",
        ids,
    )
    return {r["id"] for r in rows}


async def missing_contacts(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those of `ids` that are not contacts."""
    rows = await pool.fetch("SELECT id FROM contacts WHERE id = ANY($1::uuid[])", ids)
    found = {r["id"] for r in rows}
    return [i for i in ids if i not in found]


def like_prefix(text: str) -> str:
    """`text` as the start of a LIKE pattern: its own %, _ and \\ match themselves."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_contacts(pool: asyncpg.Pool, q: str | None, limit: int) -> list[Contact]:
    """Contacts whose external id starts with `q` (or is it), whose e-mail address does
    (case-insensitive), or whose id it is; without `q`, the latest. Newest first.

    Prefixes use the pattern indexes (`0014_console_search.sql`).
    """
    q = (q or "").strip()
    if not q:
        rows = await pool.fetch(
            f"""SELECT c.*, {BOUNCED.format(c="c")} AS bounced FROM contacts c
                ORDER BY c.created_at DESC, c.id DESC LIMIT $1""",
            limit,
        )
    else:
        try:
            as_id: uuid.UUID | None = uuid.UUID(q)
        except ValueError:
            as_id = None
        rows = await pool.fetch(
            f"""SELECT c.*, {BOUNCED.format(c="c")} AS bounced FROM contacts c
                WHERE c.external_id LIKE $1 || '%'
                   OR lower(c.email) LIKE lower($1) || '%'
                   OR c.id = $2
                ORDER BY c.created_at DESC, c.id DESC LIMIT $3""",
            like_prefix(q),
            as_id,
            limit,
        )
    return [Contact.model_validate(dict(row)) for row in rows]
