"""Query selections and the stored facts of one contact, through the SQL compiler
(`journeys.store.conditions_sql`): counting, paging and freezing a selection's members,
the contact-record pairs of a selection of records, and answering the memberships,
message history and anniversaries a journey's condition asks about."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import TypeAdapter

from journeys.contacts import profile
from journeys.definition.conditions import (
    Anniversary,
    Condition,
    InProject,
    InSelection,
    Received,
    StoredFact,
)
from journeys.models import ContactSnapshot
from journeys.store.conditions_sql import CONDITION, PairsOf, QueryProblem, compiler_for
from journeys.store.contacts import get_contact
from journeys.store.groups import MembersPage, decode_cursor, encode_cursor

_RECEIVED: TypeAdapter[Received] = TypeAdapter(Received)


@dataclass(frozen=True)
class SelectionSql:
    """`where` over `contacts c` with its parameters ($1..$n)."""

    where: str
    args: list[object]


async def selection_sql(
    conn: asyncpg.Pool | asyncpg.Connection, key: str, default_time_zone: str = "UTC"
) -> SelectionSql:
    """Who is in selection `key` (static or query), as SQL. `QueryProblem` when it does
    not exist or its query no longer compiles (a field was dropped, say)."""
    compiler = await compiler_for(conn, default_time_zone)
    where = compiler.compile(InSelection(selection=key))
    return SelectionSql(where, compiler.args)


@dataclass(frozen=True)
class PairSql:
    """`from_where`: 'FROM contacts c [JOIN record_links l ... JOIN records r ...] WHERE ...'
    with args; selects pairs when `record_type` is set (r.id is the record), else
    contacts only (no r)."""

    from_where: str
    args: list[object]
    record_type: str | None


async def pairs_sql(
    conn: asyncpg.Pool | asyncpg.Connection,
    key: str,
    default_time_zone: str = "UTC",
    at: datetime | None = None,
) -> PairSql:
    """Whom selection `key` selects, as SQL to put after `SELECT c.id, r.id` (a selection
    of records: each contact-record pair once, whatever roles link them) or after
    `SELECT c.id` (any other selection). `at` is the moment "now" means (None: the
    statement's own now()). `QueryProblem` as `selection_sql`."""
    compiler = await compiler_for(conn, default_time_zone, at=at)
    pairs = compiler.pairs.get(key)
    query = compiler.selections.get(key)
    if pairs is None or query is None:
        where = compiler.compile(InSelection(selection=key))
        return PairSql(f"FROM contacts c WHERE {where}", compiler.args, None)
    type_ = compiler.param(pairs.type, "text")
    if pairs.role is not None:
        # One link per (record, contact, role): the pairs come out once each.
        role = compiler.param(pairs.role, "text")
        links = f"record_links l ON l.contact_id = c.id AND l.role = {role}"
    else:
        # A contact may hold several roles on one record: one row per pair.
        links = (
            "(SELECT DISTINCT dl.contact_id, dl.record_id FROM record_links dl "
            f"JOIN records dr ON dr.id = dl.record_id WHERE dr.type = {type_}) l "
            "ON l.contact_id = c.id"
        )
    where = compiler.compile_as(key, query)
    return PairSql(
        f"FROM contacts c JOIN {links} JOIN records r ON r.id = l.record_id "
        f"AND r.type = {type_} WHERE {where}",
        compiler.args,
        pairs.type,
    )


async def check_query(
    pool: asyncpg.Pool,
    key: str,
    query: Condition,
    default_time_zone: str = "UTC",
    of: str | None = None,
    role: str | None = None,
) -> None:
    """`QueryProblem` unless `query` compiles as selection `key`'s (fields declared, the
    selections it names exist, none contains itself), as a selection of records of type
    `of` (through `role`) when given."""
    compiler = await compiler_for(pool, default_time_zone, overrides={key: query})
    compiler.pairs.pop(key, None)
    if of is not None:
        compiler.pairs[key] = PairsOf(of, role)
    compiler.compile_as(key, query)


async def count_selection(pool: asyncpg.Pool, key: str, default_time_zone: str = "UTC") -> int:
    sql = await selection_sql(pool, key, default_time_zone)
    return int(await pool.fetchval(f"SELECT count(*) FROM contacts c WHERE {sql.where}", *sql.args))


async def count_pairs(pool: asyncpg.Pool, key: str, default_time_zone: str = "UTC") -> int | None:
    """How many contact-record pairs a selection of records finds now; None for any other
    selection."""
    sql = await pairs_sql(pool, key, default_time_zone)
    if sql.record_type is None:
        return None
    return int(await pool.fetchval(f"SELECT count(*) {sql.from_where}", *sql.args))


async def selection_page(
    pool: asyncpg.Pool, key: str, cursor: str | None, limit: int, default_time_zone: str = "UTC"
) -> MembersPage:
    """One page of the selection's members in contact-id order, after `cursor`."""
    sql = await selection_sql(pool, key, default_time_zone)
    after = decode_cursor(cursor) if cursor else None
    n = len(sql.args)
    rows = await pool.fetch(
        f"""SELECT c.id FROM contacts c
            WHERE ({sql.where}) AND (${n + 1}::uuid IS NULL OR c.id > ${n + 1}::uuid)
            ORDER BY c.id LIMIT ${n + 2}""",
        *sql.args,
        after,
        limit + 1,
    )
    ids = [r["id"] for r in rows[:limit]]
    more = len(rows) > limit
    count = await pool.fetchval(f"SELECT count(*) FROM contacts c WHERE {sql.where}", *sql.args)
    return MembersPage(ids, int(count), encode_cursor(ids[-1]) if more and ids else None)


async def save_query(pool: asyncpg.Pool, key: str, query: Condition) -> None:
    await pool.execute(
        "UPDATE selections SET query = $2 WHERE key = $1",
        key,
        CONDITION.dump_python(query, mode="json", by_alias=True, exclude_none=True),
    )


def _fact(key: str) -> StoredFact:
    kind, _, rest = key.partition(":")
    if kind == "selection":
        return InSelection(selection=rest)
    if kind == "project":
        return InProject(project=rest)
    if kind == "anniversary":
        return Anniversary(anniversary=rest)
    return _RECEIVED.validate_json(rest)


async def stored_facts(
    pool: asyncpg.Pool, contact_id: uuid.UUID, keys: list[str], default_time_zone: str
) -> dict[str, bool]:
    """For `journeys.conditions.fact_key`s: whether each holds for the contact now, in one
    statement. A selection or field deleted since the journey was published is false."""
    if not keys:
        return {}
    compiler = await compiler_for(pool, default_time_zone)
    columns = []
    for i, key in enumerate(keys):
        try:
            columns.append(f"{compiler.compile(_fact(key))} AS f{i}")
        except QueryProblem:
            columns.append(f"false AS f{i}")
    compiler.args.append(contact_id)
    row = await pool.fetchrow(
        f"SELECT {', '.join(columns)} FROM contacts c WHERE c.id = ${len(compiler.args)}::uuid",
        *compiler.args,
    )
    return {key: bool(row and row[f"f{i}"]) for i, key in enumerate(keys)}


async def contact_snapshot(
    pool: asyncpg.Pool, contact_id: uuid.UUID, facts: list[str], default_time_zone: str = "UTC"
) -> ContactSnapshot | None:
    """The profile and the asked-for stored facts as conditions see them; None when the
    contact does not exist."""
    contact = await get_contact(pool, contact_id)
    if contact is None:
        return None
    found = await stored_facts(pool, contact.id, facts, default_time_zone)
    return ContactSnapshot(fields=profile(contact), memberships=found)
