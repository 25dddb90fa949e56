"""The condition language of `branch`, compiled to one parameterised SQL expression over
`contacts c`: what query selections count, page and freeze, and how the workflow's
contact load answers memberships, message history and anniversaries.

Nothing from the user is pasted into SQL. Field names are checked against the
contact-field schema and passed as parameters (`c.fields -> $3`); values are
parameters; the only identifiers in the text are the fixed columns below.

The semantics follow `journeys.conditions.field_is`, the workflow's evaluation: a
missing field equals nothing but `null`, comparisons between different JSON types are
false, and each leaf is true or false, never SQL NULL, so that `not` stays the
complement.

A selection `of` a record type is about contact-record pairs: its query is compiled
with `records r` in scope (the pair's record), where `record_field` leaves read
`r.fields` and `received {"recurring": ...}` counts only the messages about `r`. Used as
a membership (inside another query, a journey's branch, counts and pages of contacts)
it means "the contact has at least one such pair", an EXISTS over its links.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from journeys.definition import parse_duration
from journeys.definition.conditions import (
    AllOf,
    Anniversary,
    AnyOf,
    Condition,
    FieldIs,
    InProject,
    InSelection,
    MessageWas,
    NotOf,
    Received,
    RecordFieldIs,
)
from journeys.schema import DEFINITION, STORED_STATE, UNKNOWN_REFERENCE
from journeys.store.contacts import BOUNCED

# Profile fields that are columns, as JSON (how `journeys.contacts.profile` shows them).
_COLUMNS = {
    "id": "to_jsonb(c.id::text)",
    "external_id": "to_jsonb(c.external_id)",
    "email": "to_jsonb(c.email)",
    "phone": "to_jsonb(c.phone)",
    "first_name": "to_jsonb(c.first_name)",
    "last_name": "to_jsonb(c.last_name)",
    "time_zone": "to_jsonb(c.time_zone)",
    "created_at": "to_jsonb(c.created_at)",
    "updated_at": "to_jsonb(c.updated_at)",
    "unsubscribed_at": "to_jsonb(c.unsubscribed_at)",
    "unsubscribed": "to_jsonb(c.unsubscribed_at IS NOT NULL)",
    "bounced": f"to_jsonb({BOUNCED.format(c='c')})",
}
DATE_TYPES = ("date", "datetime")
CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


# Longer ago than this is "ever": beyond it `now() - interval` leaves PostgreSQL's range.
MAX_LOOKBACK_SECONDS = 1000 * 365 * 24 * 3600


def interval_sql(seconds_param: str) -> str:
    """An interval of `seconds_param` seconds (a placeholder), at most a thousand years."""
    return f"make_interval(secs => LEAST({seconds_param}, {MAX_LOOKBACK_SECONDS}))"


class QueryProblem(ValueError):
    """The condition cannot be a query; `loc` is where, inside the condition, and `kind`
    what kind of rule it breaks (a 422 problem's type: `journeys.schema`)."""

    def __init__(self, loc: tuple[str | int, ...], message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.kind = kind


@dataclass(frozen=True)
class PairsOf:
    """What a selection `of` a record type pairs its contacts with: records of `type`,
    linked through `role` (any role when None)."""

    type: str
    role: str | None = None


@dataclass
class Compiler:
    """Compiles conditions for one statement: parameters accumulate in `args`.

    `field_types` is the contact-field schema; `selections` maps a selection's key to
    its query (None for a static one); a key not in it does not exist. `pairs` names the
    selections `of` a record type, `record_types` the field types of each record type.
    """

    field_types: dict[str, str]
    selections: dict[str, Condition | None]
    default_time_zone: str = "UTC"
    # The moment "today" and "within" count from; None: the statement's own now().
    at: datetime | None = None
    args: list[Any] = field(default_factory=list)
    _inside: list[str] = field(default_factory=list)
    pairs: dict[str, PairsOf] = field(default_factory=dict)
    record_types: dict[str, dict[str, str]] = field(default_factory=dict)
    # The record type of `records r` while compiling a selection of records; None
    # outside one (there is no `r` then).
    record_type: str | None = None

    def param(self, value: Any, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def now(self) -> str:
        return "now()" if self.at is None else self.param(self.at, "timestamptz")

    def compile(self, cond: Condition, loc: tuple[str | int, ...] = ()) -> str:
        if isinstance(cond, AllOf):
            return (
                "("
                + " AND ".join(self.compile(c, (*loc, "all", i)) for i, c in enumerate(cond.all))
                + ")"
            )
        if isinstance(cond, AnyOf):
            return (
                "("
                + " OR ".join(self.compile(c, (*loc, "any", i)) for i, c in enumerate(cond.any))
                + ")"
            )
        if isinstance(cond, NotOf):
            return f"(NOT {self.compile(cond.not_, (*loc, 'not'))})"
        if isinstance(cond, MessageWas):
            raise QueryProblem(
                (*loc, "message"),
                "a message condition asks about a journey's own message; in a query, "
                "ask with {'received': {'journey': ..., 'step': ...}}",
                DEFINITION,
            )
        if isinstance(cond, InSelection):
            return self._selection(cond.selection, (*loc, "selection"))
        if isinstance(cond, InProject):
            key = self.param(cond.project, "text")
            return (
                "EXISTS (SELECT 1 FROM project_members pm "
                f"WHERE pm.project_key = {key} AND pm.contact_id = c.id)"
            )
        if isinstance(cond, Received):
            return self._received(cond)
        if isinstance(cond, Anniversary):
            return self._anniversary(cond, (*loc, "anniversary"))
        if isinstance(cond, RecordFieldIs):
            return f"COALESCE({self._record_field(cond, loc)}, false)"
        return f"COALESCE({self._field_is(cond, loc)}, false)"

    def _selection(self, key: str, loc: tuple[str | int, ...]) -> str:
        if key not in self.selections:
            raise QueryProblem(loc, f"selection '{key}' does not exist", UNKNOWN_REFERENCE)
        if key in self._inside:
            raise QueryProblem(
                loc,
                f"selection '{key}' contains itself: {' -> '.join([*self._inside, key])}",
                STORED_STATE,
            )
        query = self.selections[key]
        if query is None:
            param = self.param(key, "text")
            return (
                "EXISTS (SELECT 1 FROM selection_members sm "
                f"WHERE sm.selection_key = {param} AND sm.contact_id = c.id)"
            )
        try:
            if key in self.pairs:
                return self._has_pair(key, query)
            return self.compile_as(key, query)
        except QueryProblem as exc:  # inside another selection: point at its use here
            raise QueryProblem(loc, str(exc), exc.kind) from None

    def compile_as(self, key: str, query: Condition) -> str:
        """`query` as selection `key`'s: a use of `key` inside it is a cycle. For a
        selection of records, over the pair `c`, `r` (the caller joins `records r`)."""
        self._inside.append(key)
        outer = self.record_type
        pairs = self.pairs.get(key)
        self.record_type = pairs.type if pairs else None
        try:
            return self.compile(query)
        finally:
            self._inside.pop()
            self.record_type = outer

    def pair_links(self, key: str) -> str:
        """The links of `c` to records of selection `key`'s type (and role), as the
        condition of `record_links l JOIN records r`."""
        pairs = self.pairs[key]
        where = ["l.contact_id = c.id", f"r.type = {self.param(pairs.type, 'text')}"]
        if pairs.role is not None:
            where.append(f"l.role = {self.param(pairs.role, 'text')}")
        return " AND ".join(where)

    def _has_pair(self, key: str, query: Condition) -> str:
        """Selection `key` of records as a membership: the contact has a pair in it. An
        inner `r` shadows an outer one, so selections of records nest."""
        links = self.pair_links(key)
        inner = self.compile_as(key, query)
        return (
            "EXISTS (SELECT 1 FROM record_links l JOIN records r ON r.id = l.record_id "
            f"WHERE {links} AND {inner})"
        )

    def _received(self, cond: Received) -> str:
        where = ["m.status = 'sent'", "m.contact_id = c.id"]
        if cond.received.journey is not None:
            where.append(f"m.journey_key = {self.param(cond.received.journey, 'text')}")
        else:
            where.append(f"m.recurring_key = {self.param(cond.received.recurring, 'text')}")
            if self.record_type is not None:
                # In a selection of records, the exclusion is per contact-record pair.
                where.append("m.record_id IS NOT DISTINCT FROM r.id")
        if cond.received.step is not None:
            where.append(f"m.step = {self.param(cond.received.step, 'text')}")
        # With an event, `within` counts back from the open or click.
        at = "e.at" if cond.event is not None else "m.created_at"
        if cond.within is not None:
            seconds = self.param(parse_duration(cond.within).total_seconds(), "float8")
            where.append(f"{at} >= {self.now()} - {interval_sql(seconds)}")
        if cond.event is None:
            return f"EXISTS (SELECT 1 FROM messages m WHERE {' AND '.join(where)})"
        where.append(f"e.kind = {self.param(cond.event, 'text')}")
        return (
            "EXISTS (SELECT 1 FROM messages m JOIN message_events e ON e.message_id = m.id "
            f"WHERE {' AND '.join(where)})"
        )

    def _anniversary(self, cond: Anniversary, loc: tuple[str | int, ...]) -> str:
        name = cond.anniversary
        if self.field_types.get(name) not in DATE_TYPES:
            raise QueryProblem(
                loc, f"'{name}' is not a contact field of type date or datetime", STORED_STATE
            )
        raw = f"(c.fields ->> {self.param(name, 'text')})"
        zone = self.param(self.default_time_zone, "text")
        today = f"({self.now()} AT TIME ZONE COALESCE(c.time_zone, {zone}))::date"
        day = f"substr({raw}, 6, 5)"  # MM-DD of an ISO date or datetime
        # 29 February counts on 28 February in a year without one.
        leap_day = (
            f"({day} = '02-29' AND to_char({today}, 'MM-DD') = '02-28' "
            f"AND extract(day FROM (date_trunc('year', {today}) + interval '2 months' "
            f"- interval '1 day')) = 28)"
        )
        return (
            f"COALESCE({raw} ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}' "
            f"AND ({day} = to_char({today}, 'MM-DD') OR {leap_day}), false)"
        )

    def _value(self, name: str, loc: tuple[str | int, ...]) -> str:
        if name in _COLUMNS:
            return _COLUMNS[name]
        if name not in self.field_types:
            raise QueryProblem(
                (*loc, "field"),
                f"'{name}' is not a contact field; declare it with POST /contact-fields",
                UNKNOWN_REFERENCE,
            )
        return f"(c.fields -> {self.param(name, 'text')})"

    def _field_is(self, cond: FieldIs, loc: tuple[str | int, ...]) -> str:
        v = self._value(cond.field, loc)
        container = None if cond.field in _COLUMNS else "c.fields"
        return self._compare(v, container, cond.field, cond.op, cond.value, loc)

    def _record_field(self, cond: RecordFieldIs, loc: tuple[str | int, ...]) -> str:
        if self.record_type is None:
            raise QueryProblem(
                (*loc, "record_field"),
                "record_field needs a selection of a record type ('of')",
                DEFINITION,
            )
        name = cond.record_field
        declared = self.record_types.get(self.record_type, {}).get(name)
        if declared is None:
            raise QueryProblem(
                (*loc, "record_field"),
                f"'{name}' is not a field of record type '{self.record_type}'; "
                "declare it with POST /record-types",
                UNKNOWN_REFERENCE,
            )
        if cond.op in ("within_next", "within_last"):
            return self._within(cond, declared, loc)
        v = f"(r.fields -> {self.param(name, 'text')})"
        return self._compare(v, "r.fields", name, cond.op, cond.value, loc)

    def _within(self, cond: RecordFieldIs, declared: str, loc: tuple[str | int, ...]) -> str:
        """The record's date or datetime lies in the next (last) `value`, now included."""
        name = cond.record_field
        if declared not in DATE_TYPES:
            raise QueryProblem(
                (*loc, "op"),
                f"'{cond.op}' needs a date or datetime field; '{name}' is a {declared} field",
                STORED_STATE,
            )
        try:
            if not isinstance(cond.value, str):
                raise ValueError(f"'{cond.op}' takes an ISO-8601 duration such as P2D")
            seconds = parse_duration(cond.value).total_seconds()
        except ValueError as exc:
            raise QueryProblem((*loc, "value"), str(exc)) from None
        raw = f"(r.fields ->> {self.param(name, 'text')})"
        now = self.now()
        span = interval_sql(self.param(seconds, "float8"))
        bounds = (now, f"{now} + {span}") if cond.op == "within_next" else (f"{now} - {span}", now)
        # Stored values are ISO (`fieldtypes.coerce`, and a field is never retyped); the
        # pattern keeps anything else from reaching the cast.
        if declared == "datetime":
            at = f"(CASE WHEN {raw} ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}T' THEN {raw}::timestamptz END)"
            lo, hi = bounds
        else:  # a date: whole days in the default time zone, today included
            zone = self.param(self.default_time_zone, "text")
            at = f"(CASE WHEN {raw} ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$' THEN {raw}::date END)"
            lo, hi = (f"(({b}) AT TIME ZONE {zone})::date" for b in bounds)
        return f"({at} BETWEEN {lo} AND {hi})"

    def _compare(
        self,
        v: str,
        container: str | None,
        name: str,
        op: str,
        expected: Any,
        loc: tuple[str | int, ...],
    ) -> str:
        """`v` (a jsonb expression, the field `name` of the jsonb `container`, or a
        column when None) compared by `op` with `expected`."""
        missing = f"({v} IS NULL OR {v} = 'null'::jsonb)"
        if op in ("exists", "not_exists"):
            empty = f"({missing} OR {v} = '\"\"'::jsonb)"
            return f"NOT {empty}" if op == "exists" else empty
        if op in ("eq", "ne"):
            if expected is None:
                same = missing
            elif container is not None:
                # Containment finds the GIN index on `fields` whatever the field's name.
                obj = self.param({name: expected}, "jsonb")
                same = f"({container} @> {obj} AND {v} = {obj} -> {self.param(name, 'text')})"
            else:
                same = f"({v} = {self.param(expected, 'jsonb')})"
            return same if op == "eq" else f"NOT COALESCE({same}, false)"
        if op in ("in", "not_in"):
            if not isinstance(expected, list):
                # A journey's condition takes it (and is false): a query cannot.
                raise QueryProblem((*loc, "value"), f"'{op}' takes a list of values", DEFINITION)
            options = self.param(expected, "jsonb")
            found = (
                f"EXISTS (SELECT 1 FROM jsonb_array_elements({options}) o "
                f"WHERE o = COALESCE({v}, 'null'::jsonb))"
            )
            return found if op == "in" else f"NOT COALESCE({found}, false)"
        if op == "contains":
            as_json = self.param(expected, "jsonb")
            as_text = self.param(expected if isinstance(expected, str) else None, "text")
            return (
                f"(CASE jsonb_typeof({v}) WHEN 'array' THEN EXISTS (SELECT 1 FROM "
                f"jsonb_array_elements({v}) e WHERE e = {as_json}) "
                f"WHEN 'string' THEN strpos({v} #>> '{{}}', {as_text}) > 0 ELSE false END)"
            )
        if expected is None or isinstance(expected, (list, dict, bool)):
            raise QueryProblem(
                (*loc, "value"), f"'{op}' compares with a number, a text or a date", DEFINITION
            )
        sql_op = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        value = self.param(expected, "jsonb")
        # Texts in code-point order, as the workflow compares them (not the database's
        # collation); numbers as numbers.
        return (
            f"(jsonb_typeof({v}) = jsonb_typeof({value}) AND CASE jsonb_typeof({v}) "
            f"WHEN 'string' THEN ({v} #>> '{{}}') COLLATE \"C\" {sql_op} "
            f"({value} #>> '{{}}') COLLATE \"C\" ELSE {v} {sql_op} {value} END)"
        )


async def compiler_for(
    conn: asyncpg.Pool | asyncpg.Connection,
    default_time_zone: str = "UTC",
    overrides: dict[str, Condition | None] | None = None,
    at: datetime | None = None,
) -> Compiler:
    """A compiler that knows the contact-field schema, every selection's query (and what
    a selection of records pairs with) and the record types' fields; `overrides` stands
    in for stored queries (a selection being saved)."""
    types = {
        r["name"]: r["type"] for r in await conn.fetch("SELECT name, type FROM contact_fields")
    }
    rows = await conn.fetch("SELECT key, query, of_type, of_role FROM selections")
    selections: dict[str, Condition | None] = {
        r["key"]: CONDITION.validate_python(r["query"]) if r["query"] is not None else None
        for r in rows
    }
    selections.update(overrides or {})
    pairs = {
        r["key"]: PairsOf(r["of_type"], r["of_role"]) for r in rows if r["of_type"] is not None
    }
    record_types = {
        r["key"]: dict(r["fields"])
        for r in await conn.fetch("SELECT key, fields FROM record_types")
    }
    return Compiler(
        types, selections, default_time_zone, at, pairs=pairs, record_types=record_types
    )
