"""Uploaded files (attachments), kept in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from pydantic import BaseModel


class FileMeta(BaseModel):
    id: uuid.UUID
    filename: str
    content_type: str
    size: int
    created_at: datetime


async def store_file(pool: asyncpg.Pool, filename: str, content_type: str, data: bytes) -> FileMeta:
    row = await pool.fetchrow(
        """INSERT INTO files (id, filename, content_type, size, data) VALUES ($1, $2, $3, $4, $5)
           RETURNING id, filename, content_type, size, created_at""",
        uuid.uuid4(),
        filename,
        content_type,
        len(data),
        data,
    )
    assert row is not None
    return FileMeta.model_validate(dict(row))


async def get_files(pool: asyncpg.Pool, ids: list[str]) -> list[FileMeta]:
    """The metadata of those of `ids` that exist (ids that are not UUIDs do not)."""
    valid = []
    for i in ids:
        try:
            valid.append(uuid.UUID(i))
        except ValueError:
            continue
    rows = await pool.fetch(
        """SELECT id, filename, content_type, size, created_at FROM files
           WHERE id = ANY($1::uuid[])""",
        valid,
    )
    return [FileMeta.model_validate(dict(r)) for r in rows]


async def read_files(pool: asyncpg.Pool, ids: list[str]) -> list[tuple[FileMeta, bytes]]:
    """Metadata and bytes, in the order of `ids`; a missing one is left out."""
    rows = await pool.fetch(
        """SELECT id, filename, content_type, size, created_at, data FROM files
           WHERE id = ANY($1::uuid[])""",
        [uuid.UUID(i) for i in ids],
    )
    by_id = {str(r["id"]): r for r in rows}
    return [
        (FileMeta.model_validate(dict(by_id[i])), bytes(by_id[i]["data"]))
        for i in ids
        if i in by_id
    ]
