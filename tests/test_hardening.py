"""Issue 6, the edges: every bad input a 4xx naming it, every outage a 503, and
nothing stored twice or half-written."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from journeys.settings import ApiSettings, Settings
from journeys.tokens import link_token
from tests.conftest import Stack
from tests.helpers import (
    api_on,
    create_contact,
    delivered_event,
    enrol,
    publish,
    read_mail,
    wait_for_step,
    wait_until_done,
)
from tests.test_definition import valid_definition

NUL, SURROGATE = "a\u0000b", "\ud800"


# --- tokens -------------------------------------------------------------------------------


async def test_non_ascii_tokens_are_unknown_links(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as browser:
        for method, path in [
            ("GET", "/t/c/a.%C3%A9"),
            ("GET", "/t/o/a.%C3%A9"),
            ("GET", "/t/u/a.%C3%A9"),
            ("POST", "/t/u/a.%C3%A9"),
            ("GET", "/t/c/%C3%A9"),
        ]:
            response = await browser.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == {"detail": "unknown link"}


# --- NUL characters and lone surrogates ----------------------------------------------------


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_unstorable_text_is_a_422_naming_the_field(stack: Stack, bad: str) -> None:
    http = stack.http
    ext = f"bad-text-{uuid.uuid4().hex[:8]}"
    cases: list[tuple[str, dict[str, Any], list[Any]]] = [
        ("/contacts", {"external_id": ext, "first_name": bad}, ["body", "first_name"]),
        ("/contacts", {"external_id": ext, "last_name": bad}, ["body", "last_name"]),
        ("/contacts", {"external_id": bad}, ["body", "external_id"]),
        ("/contacts", {"external_id": ext, "phone": bad}, ["body", "phone"]),
        ("/contacts", {"external_id": ext, "email": f"x{bad}@example.com"}, ["body", "email"]),
        ("/contacts", {"external_id": ext, "fields": {"nick": bad}}, ["body", "fields"]),
        ("/contacts", {"external_id": ext, "fields": {"tags": ["ok", bad]}}, ["body", "fields"]),
        ("/events", {"external_id": bad, "name": "x"}, ["body", "external_id"]),
        ("/events", {"external_id": ext, "name": "x", "data": {"k": bad}}, ["body", "data"]),
        ("/events", {"external_id": ext, "name": "x", "data": {bad: 1}}, ["body", "data"]),
    ]
    if bad == NUL:  # JSON parsers take NaN and Infinity; PostgreSQL's jsonb does not
        cases.append(
            ("/contacts", {"external_id": ext, "fields": {"score": math.nan}}, ["body", "fields"])
        )
        cases.append(
            (
                "/events",
                {"external_id": ext, "name": "x", "data": {"v": math.inf}},
                ["body", "data"],
            )
        )
    journey = valid_definition(f"bad-{uuid.uuid4().hex[:6]}")
    cases.append(("/journeys", {**journey, "name": bad}, ["body", "name"]))
    html_journey = valid_definition(journey["key"])
    html_journey["steps"]["mail1"]["html"] = f"<p>{bad}</p>"
    cases.append(("/journeys", html_journey, ["body", "steps", "mail1", "send_email", "html"]))
    for path, body, loc in cases:
        # JSON escapes a lone surrogate (httpx's own encoder refuses to send one).
        response = await http.post(
            path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (path, body, response.text)
        errors = response.json()["detail"]
        assert [e["loc"] for e in errors] == [loc], errors
        # pydantic refuses some lone surrogates itself ("unable to parse raw data as a
        # unicode string"); either way the message says what is wrong.
        expected = ("NUL", "not a JSON number") if bad == NUL else ("surrogate", "unicode string")
        assert any(word in errors[0]["msg"] for word in expected), errors
    assert (
        await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE external_id = $1", ext) == 0
    )
    assert (await http.get(f"/journeys/{journey['key']}")).status_code == 404


async def test_unstorable_path_parameters_are_422(stack: Stack) -> None:
    for path in ("/journeys/a%00b", "/journeys/%ED%A0%80", "/journeys/a%00b/participants/x"):
        response = await stack.http.get(path)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["loc"][:2] == ["path", "key"]
    huge = await stack.http.get("/journeys/welcome?version=99999999999")
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["query", "version"]


async def test_a_huge_body_is_refused_with_413(stack: Stack) -> None:
    huge = json.dumps({"external_id": "huge", "fields": {"blob": "x" * (9 * 1024 * 1024)}})
    response = await stack.http.post(
        "/contacts", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert (
        await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE external_id = 'huge'") == 0
    )


# --- unsubscribe --------------------------------------------------------------------------


async def test_a_second_unsubscribe_records_nothing_and_the_first_touches_updated_at(
    stack: Stack,
) -> None:
    email = f"unsub2-{uuid.uuid4().hex[:6]}@example.com"
    key = f"unsub2-{uuid.uuid4().hex[:6]}"
    await publish(stack.http, valid_definition(key))
    contact = await create_contact(stack.http, email=email)
    before = (await stack.http.get(f"/contacts/{contact}")).json()["updated_at"]
    await enrol(stack.http, key, contact)
    msg = await read_mail(stack.http, email, "Hi Ann")
    url = str(msg["List-Unsubscribe"]).strip("<>")
    async with httpx.AsyncClient() as mail_client:
        for _ in range(2):
            response = await mail_client.post(url, data={"List-Unsubscribe": "One-Click"})
            assert response.status_code == 200
    events = await stack.pool.fetchval(
        """SELECT count(*) FROM message_events e JOIN messages m ON m.id = e.message_id
           WHERE m.contact_id = $1 AND e.kind = 'unsubscribed'""",
        uuid.UUID(contact),
    )
    assert events == 1
    after = (await stack.http.get(f"/contacts/{contact}")).json()
    assert after["unsubscribed_at"] is not None and after["updated_at"] > before


# --- the OpenAPI document and /docs ---------------------------------------------------------


async def test_405_names_every_method_of_the_path(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as browser:
        response = await browser.put("/t/u/whatever")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_openapi_documents_auth_not_found_bad_body_and_outages(stack: Stack) -> None:
    schema = (await stack.http.get("/openapi.json")).json()
    for path, method in [
        ("/contacts", "post"),
        ("/contacts/{contact_id}", "get"),
        ("/journeys/{key}", "get"),
        ("/journeys/{key}/enrolments", "post"),
        ("/events", "post"),
    ]:
        responses = schema["paths"][path][method]["responses"]
        assert {"400", "401", "404", "413", "422", "503"} <= responses.keys(), (path, responses)
    assert {"404", "503"} <= schema["paths"]["/t/c/{token}"]["get"]["responses"].keys()
    assert "409" in schema["paths"]["/events"]["post"]["responses"]


async def test_docs_page_needs_no_cdn(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as browser:
        page = await browser.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            served = await browser.get(f"/static-offline-docs/{asset}")
            assert served.status_code == 200 and len(served.content) > 10_000


# --- POST /events is safe to retry -----------------------------------------------------------


async def test_an_event_retried_with_its_idempotency_key_is_stored_once(stack: Stack) -> None:
    contact = await create_contact(stack.http)
    body = {"contact_id": contact, "name": "order_placed", "data": {"total": 12.5}}
    headers = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await stack.http.post("/events", json=body, headers=headers)
    again = await stack.http.post("/events", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json()
    stored = await stack.pool.fetchval(
        "SELECT count(*) FROM contact_events WHERE contact_id = $1 AND kind = 'custom'",
        uuid.UUID(contact),
    )
    assert stored == 1
    other = await stack.http.post("/events", json={**body, "name": "refund"}, headers=headers)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
    someone_else = await create_contact(stack.http)
    ext = (await stack.http.get(f"/contacts/{someone_else}")).json()["external_id"]
    by_ext = {"external_id": ext, "name": "order_placed", "data": {"total": 12.5}}
    assert (await stack.http.post("/events", json=by_ext, headers=headers)).status_code == 409
    bad = await stack.http.post("/events", json=body, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == [
        "header",
        "idempotency-key",
    ]


# --- outages --------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


def _settings(stack: Stack, **overrides: Any) -> ApiSettings:
    return stack.settings.model_copy(update=overrides)


async def _every_endpoint(
    http: httpx.AsyncClient, contact: str
) -> list[tuple[str, str, dict[str, Any]]]:
    token = link_token("u", uuid.uuid4(), "test-secret")
    return [
        ("POST", "/contacts", {"json": {"external_id": "down-1", "email": "d@example.com"}}),
        ("GET", f"/contacts/{contact}", {}),
        ("POST", "/journeys", {"json": valid_definition("down")}),
        ("GET", "/journeys/welcome", {}),
        ("POST", "/journeys/welcome/enrolments", {"json": {"contact_ids": [contact]}}),
        ("GET", f"/journeys/welcome/participants/{contact}", {}),
        ("POST", "/events", {"json": {"contact_id": contact, "name": "x"}}),
        ("POST", f"/t/u/{token}", {}),
    ]


async def _assert_503_quickly(
    http: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, Any]]], backend: str
) -> None:
    """Every request answers 503 JSON with Retry-After within 10 s (sent all at once)."""

    async def one(method: str, path: str, kwargs: dict[str, Any]) -> None:
        started = time.monotonic()
        response = await http.request(method, path, **kwargs)
        took = time.monotonic() - started
        assert response.status_code == 503, (method, path, response.status_code, response.text)
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["retry-after"]) > 0
        detail = response.json()["detail"]
        assert backend in detail or "did not answer" in detail, (method, path, detail)
        assert took < 10, (method, path, took)

    await asyncio.gather(*(one(*request) for request in requests))


async def test_with_postgresql_down_every_endpoint_answers_503(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    down = _settings(stack, database_url=f"postgresql://postgres@127.0.0.1:{_closed_port()}/x")
    contact = str(uuid.uuid4())
    with caplog.at_level(logging.ERROR):
        async with api_on(down) as http:
            await _assert_503_quickly(http, await _every_endpoint(http, contact), "PostgreSQL")
            health = await http.get("/healthz")
            assert health.status_code == 503 and health.json()["postgres"] != "ok"
    assert not [r for r in caplog.records if r.exc_info], "an outage logged a traceback"


async def test_with_postgresql_silent_every_endpoint_answers_503_in_time(stack: Stack) -> None:
    async with black_hole() as port:
        silent = _settings(stack, database_url=f"postgresql://postgres@127.0.0.1:{port}/x")
        async with api_on(silent) as http:
            await _assert_503_quickly(
                http, await _every_endpoint(http, str(uuid.uuid4())), "PostgreSQL"
            )


async def test_with_temporal_down_or_silent_temporal_endpoints_answer_503(stack: Stack) -> None:
    contact = await create_contact(stack.http)
    key = f"down-{uuid.uuid4().hex[:6]}"
    await publish(stack.http, valid_definition(key))
    await enrol(stack.http, key, contact)
    async with black_hole() as silent_port:
        for address in (f"127.0.0.1:{_closed_port()}", f"127.0.0.1:{silent_port}"):
            async with api_on(_settings(stack, temporal_address=address)) as http:
                await _assert_503_quickly(
                    http,
                    [
                        (
                            "POST",
                            f"/journeys/{key}/enrolments",
                            {"json": {"contact_ids": [contact]}},
                        ),
                        ("GET", f"/journeys/{key}/participants/{contact}", {}),
                    ],
                    "Temporal",
                )
                # What needs only PostgreSQL still works, events included (the worker
                # delivers them).
                assert (await http.get(f"/contacts/{contact}")).status_code == 200
                posted = await http.post("/events", json={"contact_id": contact, "name": "x"})
                assert posted.status_code == 202, posted.text


async def test_an_event_posted_while_temporal_is_down_is_stored_once_and_delivered(
    stack: Stack,
) -> None:
    contact = await create_contact(stack.http)
    key = f"evt-{uuid.uuid4().hex[:6]}"
    journey = valid_definition(key)
    journey["steps"]["wait_click"] = {
        "type": "wait_for_event",
        "event": "custom",
        "name": "paid",
        "timeout": "P1D",
        "on_event": "mail2",
        "on_timeout": "mark_cold",
    }
    await publish(stack.http, journey)
    await enrol(stack.http, key, contact)
    await wait_for_step(stack.http, key, contact, "wait_click")
    body = {"contact_id": contact, "name": "paid"}
    headers = {"Idempotency-Key": f"paid-{uuid.uuid4()}"}
    # An API that cannot reach Temporal takes the event all the same.
    async with api_on(_settings(stack, temporal_address=f"127.0.0.1:{_closed_port()}")) as down:
        first = await down.post("/events", json=body, headers=headers)
    assert first.status_code == 202, first.text
    retried = await stack.http.post("/events", json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json() == first.json()
    delivery = await delivered_event(stack.http, first.json()["id"])
    assert delivery["delivered_to"] == [f"journey/{key}/{contact}"]
    view = await wait_until_done(stack.http, key, contact)
    taken = {h["step"]: h["outcome"] for h in view["history"]}
    assert taken["wait_click"] == "custom" and "mail2" in taken, view
    stored = await stack.pool.fetchval(
        "SELECT count(*) FROM contact_events WHERE contact_id = $1 AND kind = 'custom'",
        uuid.UUID(contact),
    )
    assert stored == 1


# --- settings -------------------------------------------------------------------------------


def test_settings_refuse_a_missing_or_empty_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNEYS_SECRET", raising=False)
    monkeypatch.delenv("JOURNEYS_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="JOURNEYS_SECRET"):
        Settings()
    monkeypatch.setenv("JOURNEYS_SECRET", "")
    with pytest.raises(ValidationError, match="JOURNEYS_SECRET"):
        Settings()
    monkeypatch.setenv("JOURNEYS_SECRET", "s3cret-value")
    assert Settings().secret.get_secret_value() == "s3cret-value"
    with pytest.raises(ValidationError, match="JOURNEYS_API_KEY"):
        ApiSettings()
    monkeypatch.setenv("JOURNEYS_API_KEY", "k3y-value")
    shown = repr(ApiSettings()) + str(ApiSettings().model_dump())
    assert "s3cret-value" not in shown and "k3y-value" not in shown


def test_what_counts_as_an_outage() -> None:
    import aiosmtplib
    import asyncpg
    from temporalio.service import RPCError, RPCStatusCode

    from journeys.outages import OUTAGE_CANDIDATES, Unavailable, outage_of

    seen_in_a_restart = asyncpg.InternalClientError("cannot switch to state 12")
    assert outage_of(seen_in_a_restart) == "PostgreSQL"
    assert outage_of(asyncpg.exceptions.AdminShutdownError()) == "PostgreSQL"
    assert outage_of(Unavailable("Temporal", "no answer within 6 s")) == "Temporal"
    assert outage_of(RPCError("x", RPCStatusCode.UNAVAILABLE, b"")) == "Temporal"
    assert outage_of(aiosmtplib.SMTPConnectError("refused")) == "the mail server"
    # The API's handlers are registered for these types: each outage must be one of them.
    for outage in (
        seen_in_a_restart,
        Unavailable("Temporal", "x"),
        RPCError("x", RPCStatusCode.UNAVAILABLE, b""),
    ):
        assert isinstance(outage, OUTAGE_CANDIDATES)
    # Bugs and bad requests are not outages: they keep their status and traceback.
    assert outage_of(RPCError("x", RPCStatusCode.INVALID_ARGUMENT, b"")) is None
    assert outage_of(asyncpg.exceptions.UniqueViolationError()) is None
    assert outage_of(ValueError("x")) is None
    assert outage_of(OSError("no backend in this traceback")) is None
