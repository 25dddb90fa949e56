"""Linked records (seed 004, R): record types, records, their links to contacts, and
selections `of` a record type, which select contact-record pairs (a ticket holder and a
performance) for recurring sends: `record_field` with `within_next`/`within_last`, the
`received {"recurring": ...}` exclusion per pair, counts of contacts and pairs, use as a
membership, and `record.<field>` in templates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from journeys.conditions import fact_key, facts_read
from journeys.definition import JourneyDefinition, definition_problems
from journeys.definition.conditions import Received
from journeys.store.conditions_sql import CONDITION
from journeys.store.queries import _fact, pairs_sql
from journeys.templates import render
from tests.builders import journey
from tests.conftest import Stack
from tests.helpers import create_contact

CET = timezone(timedelta(hours=1))


async def _record_type(stack: Stack, key: str, **fields: str) -> dict[str, Any]:
    response = await stack.http.post("/record-types", json={"key": key, "fields": fields})
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def _record(stack: Stack, type_: str, external_id: str, **fields: Any) -> str:
    response = await stack.http.post(
        "/records", json={"type": type_, "external_id": external_id, "fields": fields}
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def _link(stack: Stack, record_id: str, role: str, *contact_ids: str) -> None:
    response = await stack.http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": list(contact_ids), "role": role}
    )
    assert response.status_code == 200, response.text


async def _selection(stack: Stack, body: dict[str, Any]) -> Any:
    return await stack.http.post("/selections", json={"name": "Records", "type": "query", **body})


def _in(days: float) -> str:
    return (datetime.now(CET) + timedelta(days=days)).replace(microsecond=0).isoformat()


# --- record types, records, links ------------------------------------------------------------


async def test_record_types_are_declared_and_keep_their_fields(stack: Stack) -> None:
    http, key = stack.http, f"perf-{uuid.uuid4().hex[:6]}"
    created = await http.post(
        "/record-types", json={"key": key, "fields": {"title": "text", "starts_at": "datetime"}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == key
    assert created.json()["fields"] == {"title": "text", "starts_at": "datetime"}

    # Renamed and a field added: the ones declared before stay.
    changed = await http.post(
        "/record-types", json={"key": key, "name": "Performance", "fields": {"seats": "number"}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Performance"
    assert changed.json()["fields"] == {"title": "text", "starts_at": "datetime", "seats": "number"}

    retyped = await http.post("/record-types", json={"key": key, "fields": {"seats": "text"}})
    assert retyped.status_code == 409 and "declared as number" in retyped.text

    unknown = await http.post("/record-types", json={"key": key, "fields": {"title": "string"}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "fields", "title"]
    listed = await http.post("/record-types", json={"key": key, "fields": {"tags": "list"}})
    assert listed.status_code == 422 and listed.json()["detail"][0]["loc"][-1] == "tags"
    reserved = await http.post("/record-types", json={"key": key, "fields": {"id": "text"}})
    assert reserved.status_code == 422 and "'id'" in reserved.text
    bad_key = await http.post("/record-types", json={"key": "a\u0000b", "fields": {}})
    assert bad_key.status_code == 422 and bad_key.json()["detail"][0]["loc"] == ["body", "key"]

    one = await http.get(f"/record-types/{key}")
    assert one.status_code == 200 and one.json()["name"] == "Performance"
    assert key in [t["key"] for t in (await http.get("/record-types")).json()]
    assert (await http.get("/record-types/no-such-type")).status_code == 404


async def test_records_are_upserted_by_external_id_and_checked_against_their_type(
    stack: Stack,
) -> None:
    http, key = stack.http, f"perf-{uuid.uuid4().hex[:6]}"
    await _record_type(stack, key, title="text", starts_at="datetime", day="date", seats="number")
    body = {
        "type": key,
        "external_id": "p-1",
        "fields": {"title": "Hamlet", "starts_at": "2026-12-03T20:00:00+01:00"},
    }
    created = await http.post("/records", json=body)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["type"] == key and record["external_id"] == "p-1"
    assert record["fields"] == {"title": "Hamlet", "starts_at": "2026-12-03T20:00:00+01:00"}

    # The same external id: the same record, fields merged, null removes one.
    again = await http.post(
        "/records",
        json={"type": key, "external_id": "p-1", "fields": {"seats": 120, "title": None}},
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == record["id"]
    assert again.json()["fields"] == {"starts_at": "2026-12-03T20:00:00+01:00", "seats": 120}

    read = await http.get(f"/records/{record['id']}")
    assert read.status_code == 200 and read.json()["fields"]["seats"] == 120
    found = await http.get("/records", params={"type": key, "external_id": "p-1"})
    assert [r["id"] for r in found.json()] == [record["id"]]
    assert (await http.get("/records", params={"type": key, "external_id": "p-2"})).json() == []
    assert (await http.get(f"/records/{uuid.uuid4()}")).status_code == 404
    nul = await http.get("/records", params={"external_id": "a\u0000b"})
    assert nul.status_code == 422 and nul.json()["detail"][0]["loc"] == ["query", "external_id"]

    for fields, field, words in [
        ({"starts_at": "tomorrow"}, "starts_at", "offset"),
        ({"starts_at": "2026-12-03T20:00:00"}, "starts_at", "offset"),
        ({"day": "2026-13-01"}, "day", "date"),
        ({"seats": "many"}, "seats", "number"),
        ({"title": 7}, "title", "text"),
        ({"venue": "Globe"}, "venue", "not a field"),
    ]:
        response = await http.post("/records", json={"type": key, "fields": fields})
        assert response.status_code == 422, (fields, response.text)
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["body", "fields", field], problem
        assert words in problem["msg"], problem
    unknown = await http.post("/records", json={"type": "no-such-type", "fields": {}})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "type"]
    nul = await http.post("/records", json={"type": key, "fields": {"title": "a\u0000b"}})
    assert nul.status_code == 422 and nul.json()["detail"][0]["loc"][:2] == ["body", "fields"]
    assert await stack.pool.fetchval("SELECT count(*) FROM records WHERE type = $1", key) == 1


async def test_contacts_are_linked_to_records_in_roles(stack: Stack) -> None:
    http, key = stack.http, f"perf-{uuid.uuid4().hex[:6]}"
    await _record_type(stack, key, title="text")
    record_id = await _record(stack, key, "p-1", title="Hamlet")
    ann, bob = await create_contact(http), await create_contact(http)

    linked = await http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": [ann, bob], "role": "ticket_holder"}
    )
    assert linked.status_code == 200 and linked.json() == {"linked": 2}
    again = await http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": [ann], "role": "ticket_holder"}
    )
    assert again.json() == {"linked": 0}
    no_role = await http.post(f"/records/{record_id}/contacts", json={"contact_ids": [ann]})
    assert no_role.json() == {"linked": 1}
    links = (await http.get(f"/records/{record_id}/contacts")).json()
    assert sorted((link["contact_id"], link["role"]) for link in links) == sorted(
        [(ann, "ticket_holder"), (bob, "ticket_holder"), (ann, "")]
    )

    stranger = str(uuid.uuid4())
    missing = await http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": [ann, stranger, str(uuid.uuid4())]}
    )
    assert missing.status_code == 422
    assert [p["loc"] for p in missing.json()["detail"]] == [
        ["body", "contact_ids", 1],
        ["body", "contact_ids", 2],
    ]
    assert stranger in missing.json()["detail"][0]["msg"]
    bad_role = await http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": [ann], "role": "Ticket Holder"}
    )
    assert bad_role.status_code == 422 and bad_role.json()["detail"][0]["loc"] == ["body", "role"]
    nowhere = await http.post(f"/records/{uuid.uuid4()}/contacts", json={"contact_ids": [ann]})
    assert nowhere.status_code == 404

    removed = await http.delete(
        f"/records/{record_id}/contacts/{bob}", params={"role": "ticket_holder"}
    )
    assert removed.status_code == 204
    assert (
        await http.delete(f"/records/{record_id}/contacts/{bob}", params={"role": "ticket_holder"})
    ).status_code == 404
    assert (await http.delete(f"/records/{record_id}/contacts/{ann}")).status_code == 204
    assert (await http.delete(f"/records/{uuid.uuid4()}/contacts/{ann}")).status_code == 404
    assert (await http.get(f"/records/{uuid.uuid4()}/contacts")).status_code == 404
    links = (await http.get(f"/records/{record_id}/contacts")).json()
    assert links == [{"contact_id": ann, "role": "ticket_holder"}]


# --- selections of records --------------------------------------------------------------------


async def test_a_selection_of_records_selects_pairs(stack: Stack) -> None:
    """Two contacts, three performances: Ann has tickets for one in a day and one in five
    days, Bob for another in a day (and works on the five-day one as crew)."""
    http, pool, tag = stack.http, stack.pool, uuid.uuid4().hex[:6]
    perf = f"perf-{tag}"
    await _record_type(stack, perf, title="text", starts_at="datetime", venue="text")
    p1 = await _record(stack, perf, "p-1", title="Hamlet", starts_at=_in(1), venue="Globe")
    p2 = await _record(stack, perf, "p-2", title="Lear", starts_at=_in(5), venue="Globe")
    p3 = await _record(stack, perf, "p-3", title="Macbeth", starts_at=_in(1), venue="Rose")
    ann = await create_contact(http, first_name="Ann")
    bob = await create_contact(http, first_name="Bob")
    await _link(stack, p1, "ticket_holder", ann)
    await _link(stack, p1, "crew", ann)  # two roles on one record: still one pair
    await _link(stack, p2, "ticket_holder", ann)
    await _link(stack, p3, "ticket_holder", bob)
    await _link(stack, p2, "crew", bob)

    soon = f"soon-{tag}"
    created = await _selection(
        stack,
        {
            "key": soon,
            "of": perf,
            "role": "ticket_holder",
            "query": {"record_field": "starts_at", "op": "within_next", "value": "P2D"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["of"] == perf and created.json()["role"] == "ticket_holder"
    assert (await http.get(f"/selections/{soon}")).json()["of"] == perf

    async def pairs(key: str, at: datetime | None = None) -> set[tuple[str, str]]:
        sql = await pairs_sql(pool, key, "UTC", at)
        assert sql.record_type == perf
        rows = await pool.fetch(f"SELECT c.id AS c, r.id AS r {sql.from_where}", *sql.args)
        found = [(str(row["c"]), str(row["r"])) for row in rows]
        assert len(found) == len(set(found)), found  # each pair once
        return set(found)

    assert await pairs(soon) == {(ann, p1), (bob, p3)}
    count = (await http.get(f"/selections/{soon}/count")).json()
    assert count == {"count": 2, "pairs": 2}
    # Four days on, the five-day one is within two days (and the others are past).
    later = datetime.now(UTC) + timedelta(days=4)
    assert await pairs(soon, later) == {(ann, p2)}

    # Any role: Ann's two links to Hamlet make one pair; Bob's crew link to Lear counts.
    week = f"week-{tag}"
    query: dict[str, Any] = {"record_field": "starts_at", "op": "within_next", "value": "P6D"}
    assert (await _selection(stack, {"key": week, "of": perf, "query": query})).is_success
    assert await pairs(week) == {(ann, p1), (ann, p2), (bob, p2), (bob, p3)}
    assert (await http.get(f"/selections/{week}/count")).json() == {"count": 2, "pairs": 4}
    # The record's other fields, and the contact's, in the same query.
    globe = f"globe-{tag}"
    query = {
        "all": [
            {"record_field": "venue", "op": "eq", "value": "Globe"},
            {"field": "first_name", "op": "eq", "value": "Bob"},
        ]
    }
    assert (await _selection(stack, {"key": globe, "of": perf, "query": query})).is_success
    assert await pairs(globe) == {(bob, p2)}
    past = f"past-{tag}"
    query = {"record_field": "starts_at", "op": "within_last", "value": "P1D"}
    assert (await _selection(stack, {"key": past, "of": perf, "query": query})).is_success
    assert await pairs(past) == set()
    assert await pairs(past, datetime.now(UTC) + timedelta(days=1, hours=12)) == {
        (ann, p1),
        (bob, p3),
    }

    # Ann was sent the recurring mail about Hamlet today: that pair is left out, her
    # Lear pair is not.
    recurring = f"service-{tag}"
    due = f"due-{tag}"
    not_sent = {"not": {"received": {"recurring": recurring}, "within": "P1D"}}
    query = {"all": [{"record_field": "starts_at", "op": "within_next", "value": "P6D"}, not_sent]}
    response = await _selection(
        stack, {"key": due, "of": perf, "role": "ticket_holder", "query": query}
    )
    assert response.status_code == 201, response.text
    assert await pairs(due) == {(ann, p1), (ann, p2), (bob, p3)}
    await pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, status, recurring_key, record_id)
           VALUES ($1, $2, 'recurring/test', 'recurring-test', 1, 'mail', $3, 'sent', $4, $5)""",
        uuid.uuid4(),
        f"test-{uuid.uuid4()}",
        uuid.UUID(ann),
        recurring,
        uuid.UUID(p1),
    )
    assert await pairs(due) == {(ann, p2), (bob, p3)}
    # A plain selection asks about the contact: Ann received it.
    got = f"got-{tag}"
    query = {"received": {"recurring": recurring}}
    assert (await _selection(stack, {"key": got, "query": query})).is_success
    assert (await http.get(f"/selections/{got}/count")).json() == {"count": 1}
    plain = await pairs_sql(pool, got)
    assert plain.record_type is None
    rows = await pool.fetch(f"SELECT c.id {plain.from_where}", *plain.args)
    assert [str(r["id"]) for r in rows] == [ann]

    # As a membership: the contacts with at least one pair.
    members = (await http.get(f"/selections/{soon}/members")).json()
    assert sorted(members["contact_ids"]) == sorted([ann, bob]) and members["count"] == 2
    fans = f"fans-{tag}"
    query = {"all": [{"selection": soon}, {"field": "first_name", "op": "eq", "value": "Bob"}]}
    assert (await _selection(stack, {"key": fans, "query": query})).is_success
    assert (await http.get(f"/selections/{fans}/members")).json()["contact_ids"] == [bob]
    assert (await http.get(f"/selections/{fans}/count")).json() == {"count": 1}
    # Inside another selection of records, a selection of records is about the contact
    # (it has a pair there), not about the outer pair's record.
    crossed = f"crossed-{tag}"
    query = {"all": [{"selection": soon}, {"record_field": "title", "op": "eq", "value": "Lear"}]}
    assert (await _selection(stack, {"key": crossed, "of": perf, "query": query})).is_success
    assert await pairs(crossed) == {(ann, p2), (bob, p2)}


async def test_within_counts_whole_days_for_a_date_field(stack: Stack) -> None:
    http, pool, tag = stack.http, stack.pool, uuid.uuid4().hex[:6]
    course = f"course-{tag}"
    await _record_type(stack, course, day="date")
    ann = await create_contact(http)
    days = {}
    for day in ("2026-06-09", "2026-06-10", "2026-06-11", "2026-06-13"):
        days[day] = await _record(stack, course, day, day=day)
        await _link(stack, days[day], "", ann)
    at = datetime(2026, 6, 10, 12, tzinfo=UTC)

    async def found(op: str) -> set[str]:
        key = f"{op.replace('_', '-')}-{tag}"
        query = {"record_field": "day", "op": op, "value": "P1D"}
        assert (await _selection(stack, {"key": key, "of": course, "query": query})).is_success
        sql = await pairs_sql(pool, key, "UTC", at)
        rows = await pool.fetch(f"SELECT r.id {sql.from_where}", *sql.args)
        return {
            day
            for day, record_id in days.items()
            if uuid.UUID(record_id) in {r["id"] for r in rows}
        }

    assert await found("within_next") == {"2026-06-10", "2026-06-11"}
    assert await found("within_last") == {"2026-06-09", "2026-06-10"}


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (
            {"query": {"record_field": "starts_at", "op": "within_next", "value": "P2D"}},
            ["query", "record_field"],
            "needs a selection of a record type ('of')",
        ),
        (
            {"of": "{perf}", "query": {"all": [{"record_field": "room", "op": "exists"}]}},
            ["query", "all", 0, "record_field"],
            "not a field of record type",
        ),
        (
            {
                "of": "{perf}",
                "query": {"record_field": "title", "op": "within_next", "value": "P2D"},
            },
            ["query", "op"],
            "date or datetime",
        ),
        (
            {
                "of": "{perf}",
                "query": {"record_field": "starts_at", "op": "within_last", "value": "soon"},
            },
            ["query", "value"],
            "ISO-8601 duration",
        ),
        (
            {"of": "{perf}", "query": {"record_field": "starts_at", "op": "within_next"}},
            ["query", "value"],
            "ISO-8601 duration",
        ),
        (
            {"of": "no-such-type", "query": {"field": "first_name", "op": "exists"}},
            ["of"],
            "does not exist",
        ),
    ],
)
async def test_what_a_selection_of_records_refuses(
    stack: Stack, body: dict[str, Any], loc: list[Any], words: str
) -> None:
    perf = f"perf-{uuid.uuid4().hex[:6]}"
    await _record_type(stack, perf, title="text", starts_at="datetime")
    if body.get("of") == "{perf}":
        body = {**body, "of": perf}
    response = await _selection(stack, {"key": f"bad-{uuid.uuid4().hex[:6]}", **body})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", *loc], problem
    assert words in problem["msg"], problem


async def test_of_and_role_and_received_take_their_partners(stack: Stack) -> None:
    perf = f"perf-{uuid.uuid4().hex[:6]}"
    await _record_type(stack, perf, title="text")
    bodies: list[dict[str, Any]] = [
        {"type": "static", "of": perf},
        {"type": "query", "role": "crew", "query": {"field": "first_name", "op": "exists"}},
        {"type": "query", "query": {"received": {"journey": "a", "recurring": "b"}}},
        {"type": "query", "query": {"received": {"recurring": "b", "step": "mail"}}},
        {"type": "query", "query": {"received": {}}},
    ]
    for body in bodies:
        response = await stack.http.post(
            "/selections", json={"key": f"bad-{uuid.uuid4().hex[:6]}", "name": "Bad", **body}
        )
        assert response.status_code == 422, (body, response.text)


# --- journeys and templates ------------------------------------------------------------------


def test_a_journey_refuses_record_field_wherever_its_conditions_are() -> None:
    leaf = {"record_field": "starts_at", "op": "within_next", "value": "P2D"}
    defn = JourneyDefinition.model_validate(
        journey(
            "rec",
            steps={
                "check": {
                    "type": "branch",
                    "if": {"all": [{"field": "first_name", "op": "exists"}, leaf]},
                    "then": "end",
                    "else": "end",
                },
                "end": {"type": "end"},
            },
        )
        | {"exit_if": {"not": leaf}}
    )
    problems = definition_problems(defn)
    assert [loc for loc, _ in problems] == [
        ("steps", "check", "if", "all", 1, "record_field"),
        ("exit_if", "not", "record_field"),
    ]
    assert all("record_field is for selections of records" in msg for _, msg in problems)


async def test_publishing_a_journey_with_record_field_is_refused(stack: Stack) -> None:
    key = f"rec-{uuid.uuid4().hex[:6]}"
    body = journey(
        key,
        steps={
            "check": {
                "type": "branch",
                "if": {"record_field": "title", "op": "eq", "value": "Hamlet"},
                "then": "end",
                "else": "end",
            },
            "end": {"type": "end"},
        },
    )
    response = await stack.http.post("/journeys", json=body)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "steps", "check", "if", "record_field"]
    assert "record_field is for selections of records" in problem["msg"]

    # `received` of a recurring send is about the contact: a journey may ask it.
    body["steps"]["check"]["if"] = {"received": {"recurring": "service-mail"}, "within": "P1D"}
    response = await stack.http.post("/journeys", json=body)
    assert response.status_code == 201, response.text


def test_received_of_a_recurring_send_round_trips_as_a_stored_fact() -> None:
    for raw in (
        {"received": {"recurring": "service-mail"}, "within": "P1D"},
        {"received": {"journey": "welcome", "step": "mail1"}},
    ):
        cond = CONDITION.validate_python(raw)
        assert isinstance(cond, Received)
        (key,) = facts_read(cond)
        assert key == fact_key(cond) and _fact(key) == cond
    # The journey form keeps the key it always had (runs in flight ask by it).
    assert (
        fact_key(Received.model_validate({"received": {"journey": "welcome", "step": "mail1"}}))
        == 'received:{"received":{"journey":"welcome","step":"mail1"}}'
    )


def test_templates_see_the_record() -> None:
    record = {
        "id": "9b2f0000-0000-0000-0000-000000000000",
        "type": "performance",
        "external_id": "p-1",
        "fields": {"title": "Hamlet & co", "starts_at": "2026-12-03T20:00:00+01:00"},
    }
    template = "{{ contact.first_name }}: {{ record.title }} ({{ record.external_id }})"
    assert render(template, {"first_name": "Ann"}, record=record) == "Ann: Hamlet & co (p-1)"
    html = render("<p>{{ record.title }} {{ record.id }}</p>", {}, html=True, record=record)
    assert html == "<p>Hamlet &amp; co 9b2f0000-0000-0000-0000-000000000000</p>"
    assert render("[{{ record.title }}]", {"first_name": "Ann"}) == "[]"
    assert render("{{ record.type }}", {}, record={"type": "performance"}) == "performance"
