"""Static selections and projects: both are named groups of contacts.

One piece of code for both kinds; the table names come from `_TABLES`, never
from input.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from journeys.db import Executor
from journeys.store.journal import write_journal

Kind = Literal["selection", "project"]
# kind -> (groups table, members table, the members table's key column)
_TABLES: dict[str, tuple[str, str, str]] = {
    "selection": ("selections", "selection_members", "selection_key"),
    "project": ("projects", "project_members", "project_key"),
}


class UnknownGroup(LookupError):
    """The selection or project is not there (deleted since the journey was published)."""


@dataclass(frozen=True)
class Group:
    kind: str
    key: str
    name: str
    type: str
    created_at: datetime
    query: dict[str, Any] | None = None
    # A selection of records: the record type its query pairs contacts with, and the role.
    of: str | None = None
    role: str | None = None


async def upsert_group(
    pool: asyncpg.Pool,
    kind: Kind,
    key: str,
    name: str,
    type: str = "static",
    query: dict[str, Any] | None = None,
    of: str | None = None,
    role: str | None = None,
) -> tuple[Group, bool]:
    """Create the group or rename it (and, for a query selection, change its query and
    what it pairs with); returns it and whether it was created."""
    if kind == "selection":
        row = await pool.fetchrow(
            """INSERT INTO selections (key, name, type, query, of_type, of_role)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, query = EXCLUDED.query,
                   of_type = EXCLUDED.of_type, of_role = EXCLUDED.of_role
               RETURNING *, (xmax = 0) AS created""",
            key,
            name,
            type,
            query,
            of,
            role,
        )
    else:
        row = await pool.fetchrow(
            """INSERT INTO projects (key, name) VALUES ($1, $2)
               ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name
               RETURNING *, (xmax = 0) AS created""",
            key,
            name,
        )
    assert row is not None
    return _group(kind, row), bool(row["created"])


async def get_group(pool: asyncpg.Pool, kind: Kind, key: str) -> Group | None:
    row = await pool.fetchrow(f"SELECT * FROM {_TABLES[kind][0]} WHERE key = $1", key)
    return _group(kind, row) if row else None


async def list_groups(pool: asyncpg.Pool, kind: Kind) -> list[Group]:
    rows = await pool.fetch(f"SELECT * FROM {_TABLES[kind][0]} ORDER BY key")
    return [_group(kind, r) for r in rows]


def _group(kind: str, row: asyncpg.Record) -> Group:
    return Group(
        kind=kind,
        key=row["key"],
        name=row["name"],
        type=row["type"] if kind == "selection" else "static",
        created_at=row["created_at"],
        query=row["query"] if kind == "selection" else None,
        of=row["of_type"] if kind == "selection" else None,
        role=row["of_role"] if kind == "selection" else None,
    )


async def existing_keys(pool: asyncpg.Pool, kind: Kind, keys: list[str]) -> set[str]:
    rows = await pool.fetch(f"SELECT key FROM {_TABLES[kind][0]} WHERE key = ANY($1::text[])", keys)
    return {r["key"] for r in rows}


class QuerySelection(ValueError):
    """Members are added to and removed from static selections only."""


async def _static_name(conn: Executor, kind: Kind, key: str) -> str:
    row = await conn.fetchrow(f"SELECT * FROM {_TABLES[kind][0]} WHERE key = $1", key)
    if row is None:
        raise UnknownGroup(f"{kind} '{key}' does not exist")
    if kind == "selection" and row["type"] != "static":
        raise QuerySelection(
            f"selection '{key}' is a query selection: its members are whom its query finds"
        )
    return str(row["name"])


async def change_member(
    pool: asyncpg.Pool,
    kind: Kind,
    key: str,
    contact_id: uuid.UUID,
    *,
    add: bool,
    journey_key: str | None = None,
    step: str | None = None,
    idempotency_key: str | None = None,
) -> bool:
    """Add or remove the contact; True if that changed its membership. The journal line
    is written in the same transaction (once per idempotency key)."""
    _, members, column = _TABLES[kind]
    change = (
        f"""INSERT INTO {members} ({column}, contact_id) VALUES ($1, $2)
            ON CONFLICT DO NOTHING RETURNING true"""
        if add
        else f"DELETE FROM {members} WHERE {column} = $1 AND contact_id = $2 RETURNING true"
    )
    async with pool.acquire() as conn, conn.transaction():
        name = await _static_name(conn, kind, key)
        changed = await conn.fetchval(change, key, contact_id)
        if changed:
            await write_journal(
                conn,
                contact_id,
                f"{kind}_{'added' if add else 'removed'}",
                f"{'Added to' if add else 'Removed from'} {kind} {name}",
                journey_key,
                step,
                idempotency_key,
            )
    return bool(changed)


async def add_members(
    pool: asyncpg.Pool, kind: Kind, key: str, contact_ids: list[uuid.UUID]
) -> int:
    """Add many contacts at once (the API); how many were new."""
    _, members, column = _TABLES[kind]
    async with pool.acquire() as conn, conn.transaction():
        name = await _static_name(conn, kind, key)
        rows = await conn.fetch(
            f"""INSERT INTO {members} ({column}, contact_id)
                SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING RETURNING contact_id""",
            key,
            contact_ids,
        )
        await conn.executemany(
            """INSERT INTO contact_journal (contact_id, kind, title) VALUES ($1, $2, $3)""",
            [(r["contact_id"], f"{kind}_added", f"Added to {kind} {name}") for r in rows],
        )
    return len(rows)


@dataclass(frozen=True)
class MembersPage:
    contact_ids: list[uuid.UUID]
    count: int
    next_cursor: str | None


async def members_page(
    pool: asyncpg.Pool, kind: Kind, key: str, cursor: str | None, limit: int
) -> MembersPage:
    """One page of members in contact-id order, after the opaque `cursor`."""
    _, members, column = _TABLES[kind]
    after = decode_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        f"""SELECT contact_id FROM {members}
            WHERE {column} = $1 AND ($2::uuid IS NULL OR contact_id > $2)
            ORDER BY contact_id LIMIT $3""",
        key,
        after,
        limit + 1,
    )
    count = await pool.fetchval(f"SELECT count(*) FROM {members} WHERE {column} = $1", key)
    ids = [r["contact_id"] for r in rows[:limit]]
    more = len(rows) > limit
    return MembersPage(ids, int(count), encode_cursor(ids[-1]) if more and ids else None)


def encode_cursor(contact_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(contact_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    """ValueError for a cursor this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (ValueError, TypeError):
        raise ValueError("not a cursor from a previous page") from None
