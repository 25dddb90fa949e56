"""Profile changes made by journeys: many fields and operations in one statement.

Each operation's new value is computed from the row as it was (`fields -> name`)
and all are merged at once, so two journeys incrementing the same counter at the
same moment both count (the row lock orders them), and a step changes each field
at most once (the definition check refuses a field named twice). Names and
values are parameters; only the fixed column names are written into the SQL.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg

from journeys.definition import CONTACT_COLUMNS

_NEW_VALUE = {
    "set": "{v}::jsonb",
    "increment": """to_jsonb(COALESCE((fields ->> {n})::numeric, 0)
                             + ({v}::jsonb #>> '{{}}')::numeric)""",
    "decrement": """to_jsonb(COALESCE((fields ->> {n})::numeric, 0)
                             - ({v}::jsonb #>> '{{}}')::numeric)""",
    "append": """CASE WHEN jsonb_typeof(fields -> {n}) <> 'array'
                      OR fields -> {n} IS NULL THEN jsonb_build_array({v}::jsonb)
                 WHEN fields -> {n} @> jsonb_build_array({v}::jsonb) THEN fields -> {n}
                 ELSE fields -> {n} || jsonb_build_array({v}::jsonb) END""",
    "remove": """COALESCE((SELECT jsonb_agg(e) FROM jsonb_array_elements(
                     CASE WHEN jsonb_typeof(fields -> {n}) = 'array' THEN fields -> {n}
                          ELSE '[]'::jsonb END) e WHERE e <> {v}::jsonb), '[]'::jsonb)""",
    # A declared date gets the contact's local date; anything else a UTC timestamp.
    "set_now": """CASE WHEN (SELECT type FROM contact_fields WHERE name = {n}) = 'date'
                  THEN to_jsonb(to_char((now() AT TIME ZONE COALESCE(time_zone, {tz}))::date,
                                        'YYYY-MM-DD'))
                  ELSE to_jsonb(to_char(now() AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS"Z"')) END""",
}

Outcome = Literal["applied", "applied_before", "no_contact"]


async def apply_update(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID,
    values: dict[str, Any],
    ops: list[dict[str, Any]],
    *,
    idempotency_key: str,
    title: str,
    journey_key: str,
    step: str,
    default_time_zone: str,
) -> Outcome:
    """Set `values` and apply `ops` ({field, op, value}) to the contact, once per key.

    The contact's journal gets one `profile_updated` line under the key in the same
    statement, which is what makes a retried activity change nothing twice.
    """
    params: list[Any] = [contact_id, idempotency_key, title, journey_key, step]
    time_zone: str | None = None

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    changes = [{"field": k, "op": "set", "value": v} for k, v in values.items()] + ops
    columns: list[str] = []
    pairs: list[str] = []
    cleared: list[str] = []
    for change in changes:
        name, op, value = change["field"], change["op"], change.get("value")
        if name in CONTACT_COLUMNS:
            # A column name from the fixed list; set or clear only (the definition checks).
            text = None if op == "clear" or value is None else str(value)
            columns.append(f"{name} = {param(text)}::text")
        elif op == "clear":
            cleared.append(name)
        else:
            n = param(name) + "::text"
            v = param(value) if op != "set_now" else ""
            if op == "set_now" and time_zone is None:
                time_zone = param(default_time_zone)
            pairs.append(f"{n}, " + _NEW_VALUE[op].format(n=n, v=v, tz=time_zone))
    fields = "fields"
    if pairs:
        fields = f"(fields || jsonb_build_object({', '.join(pairs)}))"
    if cleared:
        fields = f"({fields} - {param(cleared)}::text[])"
    assignments = ", ".join([f"fields = {fields}", *columns, "updated_at = now()"])
    sql = f"""
        WITH j AS (
            INSERT INTO contact_journal (contact_id, kind, title, journey_key, step,
                                         idempotency_key)
            SELECT id, 'profile_updated', $3, $4, $5, $2 FROM contacts WHERE id = $1
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING contact_id)
        UPDATE contacts SET {assignments}
        WHERE id = (SELECT contact_id FROM j)
        RETURNING id
    """
    if await pool.fetchval(sql, *params) is not None:
        return "applied"
    exists = await pool.fetchval("SELECT true FROM contacts WHERE id = $1", contact_id)
    return "applied_before" if exists else "no_contact"
