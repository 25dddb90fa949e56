"""Issue 24, the API's edges: long lists of unknown ids answer in linear time with
each problem at its own index and a bounded answer; every 413 is JSON; a multipart
body without its boundary is a documented 422; a 503 of /healthz says when to retry."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import Stack
from tests.helpers import api_on, create_contact, publish
from tests.test_definition import valid_definition

# The most ids one request takes: with `list.index` per unknown id (quadratic) the
# answer took seconds and held the event loop all along.
N = 10_000
SHOWN = 100  # problems listed one by one; one more entry counts the rest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def documented(stack: Stack, path: str, method: str, response: httpx.Response) -> None:
    """The answer is JSON and valid against what the OpenAPI document says of its status."""
    assert response.headers["content-type"] == "application/json", response.headers
    document = (await stack.http.get("/openapi.json")).json()
    answers = document["paths"][path][method]["responses"]
    assert str(response.status_code) in answers, (path, method, response.status_code)
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    assert validator.is_valid(response.json()), (path, response.text[:500])


# --- unknown ids: each at its own index, the first 100 and a count ----------------------


async def _bad_ids(stack: Stack, kind: str) -> tuple[str, str, str, dict[str, Any], str, int, str]:
    """(path template, path, field, body, the duplicated unknown id, how many unknown,
    what the messages name) for one of the endpoints that take a list of ids."""
    http = stack.http
    if kind == "request-rules":
        known = unique("sam")
        created = await http.post(
            "/users", json={"key": known, "name": "Sam", "email": "sam@example.com"}
        )
        assert created.status_code == 201, created.text
        twice = unique("nobody")
        members = [known, twice, twice, *(f"u{i}-{uuid.uuid4().hex[:6]}" for i in range(N - 3))]
        body = {"category": unique("cat"), "members": members}
        return "/request-rules", "/request-rules", "members", body, twice, N - 1, "user"
    known = await create_contact(http)
    twice = str(uuid.uuid4())
    ids = [known, twice, twice, *(str(uuid.uuid4()) for _ in range(N - 3))]
    body = {"contact_ids": ids}
    if kind == "enrolments":
        key = unique("edges")
        await publish(http, valid_definition(key))
        template, path = "/journeys/{key}/enrolments", f"/journeys/{key}/enrolments"
    elif kind == "records":
        record_type = unique("show")
        created = await http.post("/record-types", json={"key": record_type, "fields": {}})
        assert created.status_code in (200, 201), created.text
        record = await http.post("/records", json={"type": record_type, "fields": {}})
        assert record.status_code in (200, 201), record.text
        template = "/records/{record_id}/contacts"
        path = f"/records/{record.json()['id']}/contacts"
    else:
        key = unique(kind)
        group = {"key": key, "name": kind.title()}
        if kind == "selections":
            group["type"] = "static"
        created = await http.post(f"/{kind}", json=group)
        assert created.status_code in (200, 201), created.text
        template, path = f"/{kind}/{{key}}/members", f"/{kind}/{key}/members"
    return template, path, "contact_ids", body, twice, N - 1, "contact"


@pytest.mark.parametrize(
    "kind", ["enrolments", "records", "selections", "projects", "request-rules"]
)
async def test_unknown_ids_are_named_at_their_own_index_in_a_bounded_answer(
    stack: Stack, kind: str
) -> None:
    template, path, field, body, twice, unknown, what = await _bad_ids(stack, kind)
    response = await stack.http.post(path, json=body, timeout=60)
    assert response.status_code == 422, response.text[:500]
    await documented(stack, template, "post", response)
    # 100 problems of about 100 bytes, not 10,000 of them (1.25 MB before).
    assert len(response.content) < 20_000, len(response.content)
    detail = response.json()["detail"]
    assert len(detail) == SHOWN + 1
    # Index 0 is known; the unknown id given twice is named at 1 and at 2, each
    # unknown one after it at its own index.
    assert [p["loc"] for p in detail[:SHOWN]] == [["body", field, i] for i in range(1, SHOWN + 1)]
    assert all(p["type"] == "unknown_reference" for p in detail[:SHOWN])
    assert twice in detail[0]["msg"] and twice in detail[1]["msg"]
    assert f"{what} " in detail[0]["msg"] and "does not exist" in detail[0]["msg"]
    assert body[field][3] in detail[2]["msg"]
    rest = detail[SHOWN]
    assert rest["loc"] == ["body", field]
    assert rest["type"] == "too_many_problems"
    assert rest["ctx"] == {"shown": SHOWN, "more": unknown - SHOWN}
    assert f"{unknown - SHOWN:,}" in rest["msg"]


async def test_a_few_unknown_ids_are_all_listed_duplicates_each_at_its_index(
    stack: Stack,
) -> None:
    key = unique("edges")
    await publish(stack.http, valid_definition(key))
    known = await create_contact(stack.http)
    twice, once = str(uuid.uuid4()), str(uuid.uuid4())
    response = await stack.http.post(
        f"/journeys/{key}/enrolments", json={"contact_ids": [twice, known, once, twice]}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(p["loc"], p["msg"]) for p in detail] == [
        (["body", "contact_ids", 0], f"contact {twice} does not exist"),
        (["body", "contact_ids", 2], f"contact {once} does not exist"),
        (["body", "contact_ids", 3], f"contact {twice} does not exist"),
    ]
    # Nothing is enrolled, not even the known contact.
    assert (await stack.http.get(f"/journeys/{key}/participants/{known}")).status_code == 404


async def test_malformed_ids_answer_the_first_100_problems_and_a_count(stack: Stack) -> None:
    key = unique("edges")
    await publish(stack.http, valid_definition(key))
    ids = [f"not-a-uuid-{i}" for i in range(N)]
    response = await stack.http.post(
        f"/journeys/{key}/enrolments", json={"contact_ids": ids}, timeout=60
    )
    assert response.status_code == 422
    await documented(stack, "/journeys/{key}/enrolments", "post", response)
    assert len(response.content) < 40_000, len(response.content)  # 2 MB before
    detail = response.json()["detail"]
    assert [p["loc"] for p in detail[:SHOWN]] == [["body", "contact_ids", i] for i in range(SHOWN)]
    assert detail[SHOWN]["loc"] == ["body", "contact_ids"]
    assert detail[SHOWN]["ctx"] == {"shown": SHOWN, "more": N - SHOWN}


# --- 413: JSON however the body is sent ---------------------------------------------------


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


@pytest.mark.parametrize("sent", ["with-content-length", "chunked"])
async def test_a_body_over_the_limit_is_a_json_413(stack: Stack, sent: str) -> None:
    key = unique("edges")
    await publish(stack.http, valid_definition(key))
    huge = json.dumps({"external_id": "huge", "fields": {"blob": "x" * (9 * 1024 * 1024)}})
    for template, path in [
        ("/contacts", "/contacts"),
        ("/journeys/{key}/enrolments", f"/journeys/{key}/enrolments"),
        ("/events", "/events"),
    ]:
        data = huge.encode()
        content: bytes | AsyncIterator[bytes] = (
            data if sent == "with-content-length" else _chunks(data)
        )
        response = await stack.http.post(
            path, content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        await documented(stack, template, "post", response)
        assert response.json() == {"detail": "the body is larger than 8 MB"}, path
    assert (
        await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE external_id = 'huge'") == 0
    )


# --- a multipart body without its boundary --------------------------------------------------


async def test_an_sms_status_without_a_multipart_boundary_is_a_documented_422(
    stack: Stack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as twilio:
        response = await twilio.post(
            "/webhooks/sms-status",
            content=b"MessageSid=SM1&MessageStatus=failed",
            headers={"Content-Type": "multipart/form-data"},
        )
    assert response.status_code == 422, response.text
    await documented(stack, "/webhooks/sms-status", "post", response)
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body"] and "boundary" in problem["msg"], problem
    document = (await stack.http.get("/openapi.json")).json()
    answers = document["paths"]["/webhooks/sms-status"]["post"]["responses"]
    assert "boundary" in answers["422"]["description"]


# --- /healthz's 503 ---------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_healthz_503_says_when_to_retry(stack: Stack) -> None:
    down = stack.settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{_closed_port()}/x"}
    )
    async with api_on(down) as http:
        health = await http.get("/healthz")
    assert health.status_code == 503 and health.json()["postgres"] != "ok"
    assert int(health.headers["retry-after"]) > 0
    await documented(stack, "/healthz", "get", health)
    document = (await stack.http.get("/openapi.json")).json()
    answer = document["paths"]["/healthz"]["get"]["responses"]["503"]
    assert "Retry-After" in answer["headers"]
