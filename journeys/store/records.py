"""Record types, records and their links to contacts (seed 004, R).

A record is a thing contacts are linked to in a role: a performance and its ticket
holders, a course and its participants. Its fields are typed by its record type, like
a contact's free fields; a selection `of` a record type selects contact-record pairs
(`journeys.store.queries.pairs_sql`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from journeys.db import Executor

# What every record shows besides its fields: a record type cannot declare these, so a
# template's `record.<name>` is never ambiguous (`journeys.templates.render`).
RESERVED_RECORD_FIELDS = ("id", "type", "external_id", "fields", "created_at", "updated_at")


class RecordType(BaseModel):
    key: str
    name: str
    fields: dict[str, str] = Field(description="each field's type", examples=[{"title": "text"}])
    created_at: datetime


class Record(BaseModel):
    id: uuid.UUID
    type: str
    external_id: str | None
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class RecordLink(BaseModel):
    contact_id: uuid.UUID
    role: str


class RetypedField(ValueError):
    """A declared field keeps its type: records hold values of it, and queries compare
    them as such."""

    def __init__(self, name: str, stored: str, wanted: str) -> None:
        super().__init__(f"field '{name}' is declared as {stored}; it cannot become {wanted}")
        self.name = name


async def upsert_record_type(
    pool: asyncpg.Pool, key: str, name: str | None, fields: Mapping[str, str]
) -> tuple[RecordType, bool]:
    """Create the record type, or rename it (when `name` is given) and add the fields it
    does not have yet; returns it and whether it was created. Fields are never dropped or
    retyped (`RetypedField`): records keep their values and selections their queries."""
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchrow("SELECT * FROM record_types WHERE key = $1 FOR UPDATE", key)
        if before is None:
            row = await conn.fetchrow(
                """INSERT INTO record_types (key, name, fields) VALUES ($1, $2, $3)
                   ON CONFLICT (key) DO NOTHING RETURNING *""",
                key,
                name or key,
                dict(fields),
            )
            if row is not None:
                return _record_type(row), True
            # Created by a concurrent call meanwhile: change that one.
            before = await conn.fetchrow(
                "SELECT * FROM record_types WHERE key = $1 FOR UPDATE", key
            )
            assert before is not None
        declared: dict[str, str] = dict(before["fields"])
        for field, wanted in fields.items():
            if declared.get(field, wanted) != wanted:
                raise RetypedField(field, declared[field], wanted)
        row = await conn.fetchrow(
            """UPDATE record_types SET name = COALESCE($2, name), fields = $3
               WHERE key = $1 RETURNING *""",
            key,
            name,
            {**declared, **fields},
        )
        assert row is not None
        return _record_type(row), False


async def get_record_type(pool: Executor, key: str) -> RecordType | None:
    row = await pool.fetchrow("SELECT * FROM record_types WHERE key = $1", key)
    return _record_type(row) if row else None


async def list_record_types(pool: Executor) -> list[RecordType]:
    return [_record_type(r) for r in await pool.fetch("SELECT * FROM record_types ORDER BY key")]


def _record_type(row: asyncpg.Record) -> RecordType:
    return RecordType(
        key=row["key"], name=row["name"], fields=row["fields"], created_at=row["created_at"]
    )


async def upsert_record(
    pool: Executor, type: str, external_id: str | None, fields: dict[str, Any]
) -> tuple[Record, bool]:
    """Create a record, or update the one of this type with this `external_id` (fields
    merged key by key; a field given as null is removed). Without an `external_id`
    every call creates one. Returns it and whether it was created. `fields` must fit
    the type (the caller checks with `fieldtypes.coerce`)."""
    row = await pool.fetchrow(
        """INSERT INTO records (id, type, external_id, fields)
           VALUES ($1, $2, $3, jsonb_strip_nulls($4::jsonb))
           ON CONFLICT (type, external_id) DO UPDATE
               SET fields = jsonb_strip_nulls(records.fields || $4::jsonb), updated_at = now()
           RETURNING *, (xmax = 0) AS created""",
        uuid.uuid4(),
        type,
        external_id,
        fields,
    )
    assert row is not None
    return _record(row), bool(row["created"])


async def get_record(pool: Executor, record_id: uuid.UUID) -> Record | None:
    return (await get_records(pool, [record_id])).get(record_id)


async def get_records(pool: Executor, ids: list[uuid.UUID]) -> dict[uuid.UUID, Record]:
    """The records of `ids` that exist, by id, in one query."""
    rows = await pool.fetch("SELECT * FROM records WHERE id = ANY($1::uuid[])", ids)
    return {row["id"]: _record(row) for row in rows}


async def list_records(
    pool: Executor,
    type: str | None = None,
    external_id: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Record]:
    """Records in id order after `after`, of `type` and with `external_id` when given."""
    rows = await pool.fetch(
        """SELECT * FROM records
           WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR external_id = $2)
             AND ($3::uuid IS NULL OR id > $3)
           ORDER BY id LIMIT $4""",
        type,
        external_id,
        after,
        limit,
    )
    return [_record(r) for r in rows]


def _record(row: asyncpg.Record) -> Record:
    return Record(
        id=row["id"],
        type=row["type"],
        external_id=row["external_id"],
        fields=row["fields"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def link_contacts(
    pool: Executor, record_id: uuid.UUID, contact_ids: list[uuid.UUID], role: str = ""
) -> int:
    """Link the contacts to the record in `role`; how many links are new (linking again
    changes nothing)."""
    rows = await pool.fetch(
        """INSERT INTO record_links (record_id, contact_id, role)
           SELECT $1, unnest($2::uuid[]), $3 ON CONFLICT DO NOTHING RETURNING contact_id""",
        record_id,
        contact_ids,
        role,
    )
    return len(rows)


async def unlink_contact(
    pool: Executor, record_id: uuid.UUID, contact_id: uuid.UUID, role: str = ""
) -> bool:
    """Remove the contact's link in `role`; whether there was one."""
    removed = await pool.fetchval(
        """DELETE FROM record_links WHERE record_id = $1 AND contact_id = $2 AND role = $3
           RETURNING true""",
        record_id,
        contact_id,
        role,
    )
    return bool(removed)


async def record_links(pool: Executor, record_id: uuid.UUID, limit: int = 1000) -> list[RecordLink]:
    """The record's links in contact order (then role), the first `limit`."""
    rows = await pool.fetch(
        """SELECT contact_id, role FROM record_links WHERE record_id = $1
           ORDER BY contact_id, role LIMIT $2""",
        record_id,
        limit,
    )
    return [RecordLink(contact_id=r["contact_id"], role=r["role"]) for r in rows]
