"""No key may be shadowed by a route: `GET /journeys/schema` answers before
`GET /journeys/{key}`, so a journey keyed `schema` is refused (API and console), and
the words come from the app's own routes."""

from __future__ import annotations

import json

import httpx
from fastapi import APIRouter, FastAPI

from api.main import create_app
from api.route_keys import route_paths, shadowed_slots, taken_keys
from tests.builders import linear_journey, mail
from tests.conftest import API_KEY, Stack
from tests.helpers import serve_app
from tests.test_console import csrf_of, said, signed_in

# Every key slot that a fixed route shares with a key, and what takes it. A new entry
# here needs the create endpoint of that resource to refuse those keys
# (`api.route_keys.key_problems`), as POST /journeys and the console's publish do.
SHADOWED = {"/journeys/{}": {"schema": "GET /journeys/schema"}}


def test_the_words_come_from_the_routes(stack: Stack) -> None:
    app = create_app(stack.settings)
    assert shadowed_slots(route_paths(app.routes)) == SHADOWED
    assert taken_keys(app, "journeys") == {"schema": "GET /journeys/schema"}
    assert taken_keys(app, "campaigns") == {}

    # A route added later next to a key takes that word too, under any prefix.
    extra = APIRouter(prefix="/campaigns")

    @extra.get("/summary")
    async def summary() -> dict[str, str]:
        return {}

    other = FastAPI()
    other.include_router(extra)
    nested = APIRouter(prefix="/console")

    @nested.get("/campaigns/{key}")
    async def page(key: str) -> dict[str, str]:
        return {}

    @nested.post("/campaigns/new")
    async def new() -> dict[str, str]:
        return {}

    other.include_router(nested)
    assert taken_keys(other, "campaigns") == {"new": "POST /console/campaigns/new"}

    @extra.get("/{key}")
    async def one(key: str) -> dict[str, str]:
        return {}

    again = FastAPI()
    again.include_router(extra)
    assert taken_keys(again, "campaigns") == {"summary": "GET /campaigns/summary"}


async def test_a_journey_keyed_like_a_route_is_refused(stack: Stack) -> None:
    http = stack.http
    definition = linear_journey("schema", "Shadowed", ("hi", mail("Hi")))
    refused = await http.post("/journeys", json=definition)
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "key"], problem
    assert problem["msg"].startswith("'schema' cannot be a journey's key: the route GET "), problem
    assert "/journeys/schema" in problem["msg"] and "choose another key" in problem["msg"]
    # The route still answers what it did, and no journey was stored under the key.
    schema = await http.get("/journeys/schema")
    assert schema.status_code == 200 and "properties" in schema.json()
    stored = await stack.pool.fetchval("SELECT count(*) FROM journeys WHERE key = 'schema'")
    assert stored == 0
    # A key that is no route's publishes as ever.
    fine = await http.post("/journeys", json={**definition, "key": "schemas"})
    assert fine.status_code == 201, fine.text
    assert (await http.get("/journeys/schemas")).json()["key"] == "schemas"


async def test_the_console_refuses_it_too(stack: Stack) -> None:
    browser: httpx.AsyncClient = await signed_in(stack, API_KEY)
    try:
        form = await browser.get("/console/publish")
        text = json.dumps(linear_journey("schema", "Shadowed", ("hi", mail("Hi"))))
        for action in ("check", "publish"):
            answer = await browser.post(
                "/console/publish",
                data={"definition": text, "csrf": csrf_of(form.text), "action": action},
            )
            assert answer.status_code == 422, (action, answer.status_code)
            assert "'schema' cannot be a journey's key" in said(answer), action
    finally:
        await browser.aclose()


async def test_every_create_endpoint_with_a_key_in_a_path_refuses_a_taken_one(
    stack: Stack,
) -> None:
    """Were a route added beside a campaign's, an action's or a recurring send's key,
    that word is refused as their key at once: the guard reads the routes."""
    app = create_app(stack.settings)
    later = APIRouter()

    @later.get("/campaigns/summary")
    @later.get("/campaigns/{key}/actions/summary")
    @later.get("/recurring-sends/summary")
    async def summary() -> dict[str, str]:
        return {}

    app.include_router(later)
    async with serve_app(app, API_KEY) as served:
        http = served.http
        campaign = await http.post("/campaigns", json={"key": "summary", "name": "S"})
        assert campaign.status_code == 422, campaign.text
        assert "'summary' cannot be a campaign's key" in campaign.text
        made = await http.post("/campaigns", json={"key": "summaries", "name": "S"})
        assert made.status_code in (200, 201), made.text
        action = await http.post(
            "/campaigns/summaries/actions",
            json={"key": "summary", "selection": "nobody", "record_type": "mail", "subject": "S"},
        )
        assert action.status_code == 422, action.text
        assert "'summary' cannot be a campaign action's key" in action.text
        send = await http.post(
            "/recurring-sends",
            json={
                "key": "summary",
                "name": "S",
                "message": {"subject": "S", "html": "<p>S</p>"},
                "selection": "nobody",
                "frequency": "daily",
                "times": ["09:00"],
                "start_date": "2026-01-01",
            },
        )
        assert send.status_code == 422, send.text
        assert "'summary' cannot be a recurring send's key" in send.text
