"""Query selections: the condition language of `branch`, compiled to SQL.

The SQL must find exactly whom the workflow's own evaluation (`journeys.conditions`)
finds, for any condition: a property test compares the two over a fixed set of
contacts. Then the API: saving, counting, paging, nesting, and what it refuses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from journeys.conditions import evaluate
from journeys.contacts import profile
from journeys.db import create_pool
from journeys.definition.conditions import Condition
from journeys.models import JourneyState
from journeys.recurring import exclusion_problem
from journeys.store.conditions_sql import CONDITION, Compiler, QueryProblem, compiler_for
from journeys.store.contacts import get_contact
from tests.builders import journey, linear_journey, mail
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    enrol,
    links_in,
    pixel_in,
    publish,
    read_mail,
    wait_until_done,
)

FIELDS = {"sel_country": "text", "sel_score": "number", "sel_vip": "boolean", "sel_tags": "list"}
VALUES: dict[str, list[Any]] = {
    "sel_country": ["NL", "BE", "nl", "", None],
    "sel_score": [0, 3, 7.5, -1, None],
    "sel_vip": [True, False, None],
    "sel_tags": [["a"], ["a", "b"], [], None],
}


@pytest.fixture(scope="module")
async def population(postgres_url: str) -> AsyncIterator[tuple[asyncpg.Pool, list[uuid.UUID]]]:
    """Contacts covering every value of every field (a value of None: the field is absent),
    each field declared with its type."""
    pool = await create_pool(postgres_url)
    for name, type_ in FIELDS.items():
        await pool.execute(
            "INSERT INTO contact_fields (name, type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            name,
            type_,
        )
    ids = []
    names = list(FIELDS)
    for i in range(40):
        fields = {
            name: VALUES[name][(i * (k + 2) + i // (k + 1)) % len(VALUES[name])]
            for k, name in enumerate(names)
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        contact_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO contacts (id, email, first_name, fields) VALUES ($1, $2, $3, $4)",
            contact_id,
            f"sel{i}@example.com" if i % 5 else None,
            ["Ann", "Bob", "", "ann"][i % 4],
            fields,
        )
        ids.append(contact_id)
    yield pool, ids
    await pool.close()


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"]

    def value_for(name: str) -> st.SearchStrategy[Any]:
        values = VALUES.get(name, ["Ann", "ann", "", None, 3])
        return st.one_of(st.sampled_from(values), st.lists(st.sampled_from(values), max_size=3))

    return st.sampled_from([*FIELDS, "first_name", "email"]).flatmap(
        lambda name: st.builds(
            lambda op, value: {"field": name, "op": op, "value": value},
            st.sampled_from(ops),
            value_for(name),
        )
    )


conditions = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=conditions)
async def test_the_sql_finds_whom_the_workflow_finds(
    population: tuple[asyncpg.Pool, list[uuid.UUID]], raw: dict[str, Any]
) -> None:
    pool, ids = population
    cond: Condition = CONDITION.validate_python(raw)
    compiler = Compiler(FIELDS, {})
    try:
        where = compiler.compile(cond)
    except QueryProblem:  # refused when saved (an order of lists, say): nothing to compare
        assume(False)
    n = len(compiler.args)
    rows = await pool.fetch(
        f"SELECT c.id FROM contacts c WHERE c.id = ANY(${n + 1}::uuid[]) AND {where}",
        *compiler.args,
        ids,
    )
    found_by_sql = {r["id"] for r in rows}
    found_by_workflow = set()
    for contact_id in ids:
        contact = await get_contact(pool, contact_id)
        assert contact is not None
        if evaluate(cond, profile(contact), JourneyState(current_step="")):
            found_by_workflow.add(contact_id)
    assert found_by_sql == found_by_workflow, raw


async def test_anniversaries_count_in_the_contacts_time_zone(
    population: tuple[asyncpg.Pool, list[uuid.UUID]],
) -> None:
    pool, _ = population
    await pool.execute(
        "INSERT INTO contact_fields (name, type) VALUES ('sel_birthday', 'date') "
        "ON CONFLICT DO NOTHING"
    )
    people = {
        "leapling": ("2000-02-29", "Europe/Amsterdam"),
        "feb28": ("1990-02-28", "Europe/Amsterdam"),
        "mar1": ("1985-03-01", "Europe/Amsterdam"),
        "auckland": ("1970-03-01", "Pacific/Auckland"),  # already 1 March there
        "no_zone": ("1999-02-28", None),
        "not_a_date": ("sometime", "Europe/Amsterdam"),
    }
    ids = {}
    for name, (birthday, zone) in people.items():
        ids[name] = uuid.uuid4()
        await pool.execute(
            "INSERT INTO contacts (id, time_zone, fields) VALUES ($1, $2, $3)",
            ids[name],
            zone,
            {"sel_birthday": birthday},
        )

    async def born_today(at: datetime) -> set[str]:
        compiler = await compiler_for(pool, "UTC", at=at)
        where = compiler.compile(CONDITION.validate_python({"anniversary": "sel_birthday"}))
        n = len(compiler.args)
        rows = await pool.fetch(
            f"SELECT c.id FROM contacts c WHERE c.id = ANY(${n + 1}::uuid[]) AND {where}",
            *compiler.args,
            list(ids.values()),
        )
        return {name for name, i in ids.items() if i in {r["id"] for r in rows}}

    # 2027 has no 29 February: the leapling celebrates on the 28th. At 12:00 UTC it is
    # already 1 March in Auckland.
    assert await born_today(datetime(2027, 2, 28, 12, tzinfo=UTC)) == {
        "leapling",
        "feb28",
        "no_zone",
        "auckland",
    }
    # 2028 has one: the 28th is not the leapling's day, the 29th is.
    assert await born_today(datetime(2028, 2, 28, 9, tzinfo=UTC)) == {"feb28", "no_zone"}
    assert await born_today(datetime(2028, 2, 29, 9, tzinfo=UTC)) == {"leapling"}
    assert await born_today(datetime(2027, 2, 28, 9, tzinfo=UTC)) == {
        "leapling",
        "feb28",
        "no_zone",
    }


# --- the API -----------------------------------------------------------------------------


async def _field(stack: Stack, name: str, type_: str) -> None:
    response = await stack.http.post("/contact-fields", json={"name": name, "type": type_})
    assert response.status_code in (200, 201), response.text


async def _selection(stack: Stack, body: dict[str, Any]) -> Any:
    return await stack.http.post("/selections", json=body)


async def test_a_query_selection_is_counted_paged_and_nested(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    await _field(stack, "api_country", "text")
    await _field(stack, "api_score", "number")
    dutch = [
        await create_contact(http, fields={"api_country": f"NL-{tag}", "api_score": i})
        for i in range(7)
    ]
    await create_contact(http, fields={"api_country": f"BE-{tag}", "api_score": 9})
    nl = f"nl-{tag}"
    created = await _selection(
        stack,
        {
            "key": nl,
            "name": "Dutch",
            "type": "query",
            "query": {"field": "api_country", "op": "eq", "value": f"NL-{tag}"},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["query"] == {"field": "api_country", "op": "eq", "value": f"NL-{tag}"}
    assert (await http.get(f"/selections/{nl}/count")).json() == {"count": 7}

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/selections/{nl}/members", params=params)).json()
        assert page["count"] == 7
        seen += page["contact_ids"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(dutch) and len(seen) == 7

    # A selection of a selection, with a static one beside it.
    static = f"picked-{tag}"
    assert (await _selection(stack, {"key": static, "name": "Picked", "type": "static"})).is_success
    await http.post(f"/selections/{static}/members", json={"contact_ids": dutch[:2]})
    keen = f"keen-{tag}"
    response = await _selection(
        stack,
        {
            "key": keen,
            "name": "Keen Dutch",
            "type": "query",
            "query": {
                "all": [
                    {"selection": nl},
                    {
                        "any": [
                            {"field": "api_score", "op": "gte", "value": 5},
                            {"selection": static},
                        ]
                    },
                ]
            },
        },
    )
    assert response.status_code == 201, response.text
    assert (await http.get(f"/selections/{keen}/count")).json() == {"count": 4}

    # A cycle through the nested one is refused, and the stored query is kept.
    cycle = await _selection(
        stack,
        {
            "key": nl,
            "name": "Dutch",
            "type": "query",
            "query": {"all": [{"field": "api_country", "op": "exists"}, {"selection": keen}]},
        },
    )
    assert cycle.status_code == 422, cycle.text
    assert "contains itself" in cycle.text and f"{nl} -> {keen} -> {nl}" in cycle.text
    assert (await http.get(f"/selections/{nl}/count")).json() == {"count": 7}

    # Members are whom the query finds: they are not added by hand.
    refused = await http.post(f"/selections/{nl}/members", json={"contact_ids": dutch[:1]})
    assert refused.status_code == 409 and "query selection" in refused.text
    turned = await _selection(stack, {"key": nl, "name": "Dutch", "type": "static"})
    assert turned.status_code == 409, turned.text


async def test_injection_attempts_are_refused_or_match_nobody(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    await _field(stack, "api_country", "text")
    await create_contact(http, fields={"api_country": "NL"})
    before = await stack.pool.fetchval("SELECT count(*) FROM contacts")

    bad_name = await _selection(
        stack,
        {
            "key": f"inj-{tag}",
            "name": "Injection",
            "type": "query",
            "query": {"field": "country; DROP TABLE contacts", "op": "eq", "value": "NL"},
        },
    )
    assert bad_name.status_code == 422, bad_name.text
    assert any(
        p["loc"][:2] == ["body", "query"] and p["loc"][-1] == "field"
        for p in bad_name.json()["detail"]
    ), bad_name.text

    for value in ("' OR 1=1 --", "NL' OR '1'='1", '"; DROP TABLE contacts; --'):
        key = f"inj-{uuid.uuid4().hex[:6]}"
        response = await _selection(
            stack,
            {
                "key": key,
                "name": "Injection",
                "type": "query",
                "query": {"field": "api_country", "op": "eq", "value": value},
            },
        )
        assert response.status_code == 201, response.text
        assert (await http.get(f"/selections/{key}/count")).json() == {"count": 0}
    assert await stack.pool.fetchval("SELECT count(*) FROM contacts") >= before


@pytest.mark.parametrize(
    ("query", "loc", "words"),
    [
        ({"field": "never_declared", "op": "eq", "value": 1}, ["field"], "not a contact field"),
        ({"selection": "no-such-selection"}, ["selection"], "does not exist"),
        ({"message": "mail1", "event": "clicked"}, ["message"], "received"),
        ({"anniversary": "first_name"}, ["anniversary"], "date or datetime"),
        ({"not": {"field": "api_country", "op": "gt", "value": [1]}}, ["not", "value"], "compares"),
    ],
)
async def test_a_query_that_cannot_be_compiled_is_refused_with_where(
    stack: Stack, query: dict[str, Any], loc: list[str], words: str
) -> None:
    await _field(stack, "api_country", "text")
    response = await _selection(
        stack,
        {"key": f"bad-{uuid.uuid4().hex[:6]}", "name": "Bad", "type": "query", "query": query},
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "query", *loc], problem
    assert words in problem["msg"], problem


def naming_branch(key: str, condition: dict[str, Any], then: str, else_: str) -> dict[str, Any]:
    """A journey that branches on `condition` and sets the first name to `then` or
    `else_`: what the branch decided, readable on the contact."""
    return journey(
        key,
        steps={
            "check": {"type": "branch", "if": condition, "then": "yes", "else": "no"},
            "yes": {"type": "update_contact", "set": {"first_name": then}, "next": "end"},
            "no": {"type": "update_contact", "set": {"first_name": else_}, "next": "end"},
            "end": {"type": "end"},
        },
    )


async def test_message_history_selects_and_branches(stack: Stack) -> None:
    """`received` in a selection and in a journey's branch: the database answers both."""
    http, tag = stack.http, uuid.uuid4().hex[:6]
    mailer = f"hist-mail-{tag}"
    await publish(http, linear_journey(mailer, "History", ("hello", mail("Hello"))))
    reader, other = await create_contact(http), await create_contact(http)
    await enrol(http, mailer, reader)
    await wait_until_done(http, mailer, reader)
    received = {"received": {"journey": mailer, "step": "hello"}, "within": "P1D"}
    key = f"got-hello-{tag}"
    response = await _selection(
        stack, {"key": key, "name": "Got hello", "type": "query", "query": received}
    )
    assert response.status_code == 201, response.text
    page = (await http.get(f"/selections/{key}/members")).json()
    assert page["contact_ids"] == [reader]

    brancher = f"hist-branch-{tag}"
    await publish(http, naming_branch(brancher, received, "Reader", "Stranger"))
    await enrol(http, brancher, reader, other)
    for contact_id, name in ((reader, "Reader"), (other, "Stranger")):
        await wait_until_done(http, brancher, contact_id)
        contact = (await http.get(f"/contacts/{contact_id}")).json()
        assert contact["first_name"] == name


async def test_a_lookback_longer_than_the_calendar_is_ever(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    for within in ("P10000Y", "P3000000Y"):
        key = f"ever-{uuid.uuid4().hex[:6]}"
        query = {"received": {"journey": f"never-{tag}"}, "within": within}
        response = await _selection(
            stack, {"key": key, "name": "Ever", "type": "query", "query": query}
        )
        if response.status_code == 422:  # beyond any duration: refused with where
            assert response.json()["detail"][0]["loc"][:2] == ["body", "query"]
            continue
        assert response.status_code == 201, response.text
        assert (await http.get(f"/selections/{key}/count")).json() == {"count": 0}


async def test_opens_and_clicks_select_and_branch_across_journeys(stack: Stack) -> None:
    """`received` with `event`: who opened, or clicked in, a journey's mail (within a
    time of the open or click), in a selection and in another journey's branch."""
    http, tag = stack.http, uuid.uuid4().hex[:6]
    newsletter = f"news-{tag}"
    await publish(
        http,
        linear_journey(
            newsletter,
            "News",
            ("issue", mail("News", '<p><a href="https://example.com/story">Read</a></p>')),
        ),
    )
    emails = {who: f"{who}-{tag}@example.com" for who in ("opener", "clicker", "idle")}
    ids = {who: await create_contact(http, email=email) for who, email in emails.items()}
    await enrol(http, newsletter, *ids.values())
    async with httpx.AsyncClient() as reader:
        opened = await read_mail(http, emails["opener"], "News")
        assert (await reader.get(pixel_in(opened))).status_code == 200
        clicked = await read_mail(http, emails["clicker"], "News")
        assert (await reader.get(links_in(clicked)[0])).status_code == 302
    await read_mail(http, emails["idle"], "News")

    async def members(event: str, within: str = "P1D") -> set[str]:
        key = f"{event}-{uuid.uuid4().hex[:6]}"
        query = {"received": {"journey": newsletter}, "event": event, "within": within}
        made = await _selection(stack, {"key": key, "name": key, "type": "query", "query": query})
        assert made.status_code == 201, made.text
        found = (await http.get(f"/selections/{key}/members")).json()["contact_ids"]
        return {who for who, contact in ids.items() if contact in found}

    assert await members("clicked") == {"clicker"}
    assert "opener" in await members("opened") and "idle" not in await members("opened")
    # `within` counts back from the click: one 1.5 s ago is not within a second.
    await asyncio.sleep(1.5)
    assert await members("clicked", "PT1S") == set()

    brancher = f"news-branch-{tag}"
    clicked_it = {"received": {"journey": newsletter}, "event": "clicked"}
    await publish(http, naming_branch(brancher, clicked_it, "Hot", "Cold"))
    await enrol(http, brancher, ids["clicker"], ids["idle"])
    for who, name in (("clicker", "Hot"), ("idle", "Cold")):
        await wait_until_done(http, brancher, ids[who])
        assert (await http.get(f"/contacts/{ids[who]}")).json()["first_name"] == name


def test_not_opened_is_no_exclusion_of_recent_recipients() -> None:
    """A recurring send's selection must leave out who received it; leaving out who
    opened it leaves the others in, to be mailed twice."""
    exclusion = {"not": {"received": {"recurring": "daily"}, "within": "P1D"}}
    not_opened = {"not": {"received": {"recurring": "daily"}, "event": "opened", "within": "P1D"}}
    for query, excludes in ((exclusion, True), (not_opened, False)):
        queries: dict[str, Condition | None] = {"sel": CONDITION.validate_python({"all": [query]})}
        assert (exclusion_problem("daily", "sel", queries) is None) is excludes
