"""Contacts (profiles) in PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from journeys.contacts import Contact, ContactIn
from journeys.definition import CONTACT_COLUMNS


async def upsert_contact(pool: asyncpg.Pool, data: ContactIn) -> tuple[Contact, bool]:
    """Create the contact, or update the one with the same external id.

    Columns given replace what is stored; free fields are merged key by key.
    Returns the contact and whether it was created.
    """
    given = data.model_fields_set
    row = await pool.fetchrow(
        """
        INSERT INTO contacts
            (id, external_id, email, phone, first_name, last_name, time_zone, fields)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (external_id) DO UPDATE SET
            email = CASE WHEN $9 THEN EXCLUDED.email ELSE contacts.email END,
            phone = CASE WHEN $10 THEN EXCLUDED.phone ELSE contacts.phone END,
            first_name = CASE WHEN $11 THEN EXCLUDED.first_name ELSE contacts.first_name END,
            last_name = CASE WHEN $12 THEN EXCLUDED.last_name ELSE contacts.last_name END,
            time_zone = CASE WHEN $13 THEN EXCLUDED.time_zone ELSE contacts.time_zone END,
            fields = contacts.fields || EXCLUDED.fields,
            updated_at = now()
        RETURNING *, (xmax = 0) AS created
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
    )
    assert row is not None
    return Contact.model_validate(dict(row)), bool(row["created"])


async def get_contact(
    pool: asyncpg.Pool | asyncpg.Connection, contact_id: uuid.UUID
) -> Contact | None:
    row = await pool.fetchrow("SELECT * FROM contacts WHERE id = $1", contact_id)
    return Contact.model_validate(dict(row)) if row else None


async def missing_contacts(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those of `ids` that are not contacts."""
    rows = await pool.fetch("SELECT id FROM contacts WHERE id = ANY($1::uuid[])", ids)
    found = {r["id"] for r in rows}
    return [i for i in ids if i not in found]


async def set_fields(pool: asyncpg.Pool, contact_id: uuid.UUID, values: dict[str, Any]) -> bool:
    """Set columns and free fields in one statement; False if there is no such contact."""
    columns = {k: v for k, v in values.items() if k in CONTACT_COLUMNS}
    free = {k: v for k, v in values.items() if k not in CONTACT_COLUMNS}
    assignments = [f"{name} = ${i}" for i, name in enumerate(columns, start=3)]
    # Column names come from the fixed CONTACT_COLUMNS list, never from input.
    sql = (
        "UPDATE contacts SET fields = fields || $2, updated_at = now()"
        + "".join(f", {a}" for a in assignments)
        + " WHERE id = $1"
    )
    status = await pool.execute(sql, contact_id, free, *columns.values())
    return status.endswith(" 1")
