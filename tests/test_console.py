"""The console over plain HTTP, as a browser without JavaScript uses it: sign in with
a key, publish from the form (problems placed on the graph), the counts on a journey's
graph, a participant's page, and who may do what."""

from __future__ import annotations

import html
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata

from tests.builders import journey
from tests.conftest import API_KEY, Stack
from tests.helpers import api_on, create_contact, enrol, eventually, wait_for_step
from tests.test_hardening import _closed_port

SVG = "{http://www.w3.org/2000/svg}"


def console_journey(key: str) -> dict[str, Any]:
    """welcome -> wait for a click (P3D) -> branch -> thanks / end, with a follow-up."""
    return journey(
        key,
        name="Console welcome",
        steps={
            "welcome": {
                "type": "send_email",
                "title": "Welcome <b>mail</b>",
                "subject": "Welcome {{ contact.first_name }}",
                "html": '<p><a href="https://example.com/start">Start</a></p>',
                "next": "wait_click",
                "follow_ups": [
                    {
                        "key": "opened-nudge",
                        "on": "opened",
                        "start": "tag",
                        "steps": {
                            "tag": {
                                "type": "update_contact",
                                "set": {"nudged": True},
                                "next": "done",
                            },
                            "done": {"type": "end"},
                        },
                    }
                ],
            },
            "wait_click": {
                "type": "wait_for_event",
                "event": "clicked",
                "message": "welcome",
                "timeout": "P3D",
                "on_event": "thanks",
                "on_timeout": "end",
            },
            "thanks": {
                "type": "send_email",
                "subject": "Thanks",
                "html": "<p>x</p>",
                "next": "end",
            },
            "end": {"type": "end"},
        },
    )


async def signed_in(stack: Stack, key: str) -> httpx.AsyncClient:
    browser = httpx.AsyncClient(base_url=stack.base_url)
    response = await browser.post("/console/sign-in", data={"key": key, "next": "/console"})
    assert response.status_code == 303, response.text
    return browser


@pytest.fixture
async def browser(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(stack, API_KEY)
    yield client
    await client.aclose()


def said(response: httpx.Response) -> str:
    """The page's text as read (entities unescaped)."""
    return html.unescape(response.text)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "the form carries its token"
    return match.group(1)


def boxes(page: str) -> dict[str, ET.Element]:
    """The step boxes of the first SVG on the page, by node id."""
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg, "the page has a graph"
    root = ET.fromstring(svg.group(0))
    return {g.attrib["data-step"]: g for g in root.iter(f"{SVG}g") if "data-step" in g.attrib}


def number(box: ET.Element, attribute: str) -> int:
    found = [e for e in box.iter() if attribute in e.attrib]
    assert len(found) == 1, f"one element with {attribute}"
    return int("".join(found[0].itertext()))


async def test_signing_in_and_out(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        page = await anonymous.get("/console/journeys?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fjourneys%3Fx%3D1"
        wrong = await anonymous.post("/console/sign-in", data={"key": "jk_" + "a" * 43})
        assert wrong.status_code == 401 and "invalid API key" in wrong.text
        empty = await anonymous.post("/console/sign-in", data={"key": " "})
        assert empty.status_code == 401 and "enter an API key" in empty.text
        right = await anonymous.post(
            "/console/sign-in", data={"key": API_KEY, "next": "/console/journeys?x=1"}
        )
        assert right.status_code == 303 and right.headers["location"] == "/console/journeys?x=1"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert API_KEY not in cookie
        # Never back to another site.
        elsewhere = await anonymous.post(
            "/console/sign-in", data={"key": API_KEY, "next": "//evil.example/x"}
        )
        assert elsewhere.headers["location"] == "/console/journeys"
        home = await anonymous.get("/console/journeys")
        assert home.status_code == 200
        nav = re.search(r"<nav>.*?</nav>", home.text, re.S)
        assert nav, "signed in, the page has the navigation"
        for section in ("journeys", "contacts", "messages", "campaigns", "recurring-sends"):
            assert f'href="/console/{section}"' in nav.group(0), section
            assert (await anonymous.get(f"/console/{section}")).status_code == 200, section
        # A forged cookie is no session.
        anonymous.cookies.set("journeys_console", "x" + anonymous.cookies["journeys_console"])
        assert (await anonymous.get("/console/journeys")).status_code == 303
        out = await anonymous.post("/console/sign-out")
        assert out.status_code == 303 and "journeys_console=" in out.headers["set-cookie"]


async def test_scopes_csrf_and_revocation(stack: Stack, browser: httpx.AsyncClient) -> None:
    made = await stack.http.post(
        "/api-keys", json={"name": f"viewer-{uuid.uuid4().hex[:6]}", "scopes": ["read"]}
    )
    assert made.status_code == 201, made.text
    viewer = await signed_in(stack, made.json()["key"])
    try:
        page = await viewer.get("/console/publish")
        assert page.status_code == 200 and "needs a key with the write scope" in page.text
        refused = await viewer.post(
            "/console/publish", data={"definition": "{}", "csrf": csrf_of(page.text)}
        )
        assert refused.status_code == 403 and "lacks the 'write' scope" in said(refused)
        # A writer's form without its token (another site posting it) is refused.
        forged = await browser.post("/console/publish", data={"definition": "{}"})
        assert forged.status_code == 403 and "stale or from another site" in forged.text
        # Revoking the key ends its sessions at once.
        assert (await stack.http.delete(f"/api-keys/{made.json()['name']}")).status_code == 200
        gone = await viewer.get("/console/journeys")
        assert gone.status_code == 303 and "was%20revoked" in gone.headers["location"]
    finally:
        await viewer.aclose()


async def test_publishing_places_problems_on_the_graph(
    stack: Stack, browser: httpx.AsyncClient
) -> None:
    key = f"console-{uuid.uuid4().hex[:8]}"
    form = await browser.get("/console/publish")
    token = csrf_of(form.text)
    broken = console_journey(key)
    broken["steps"]["thanks"]["next"] = "nowhere"

    checked = await browser.post(
        "/console/publish",
        data={"definition": json.dumps(broken), "csrf": token, "action": "publish"},
    )
    assert checked.status_code == 422
    assert "step 'thanks': next 'nowhere' is not a step of this journey" in said(checked)
    found = boxes(checked.text)
    assert "problem" in found["thanks"].attrib["class"].split()
    assert "problem" not in found["welcome"].attrib["class"].split()
    assert (await stack.http.get(f"/journeys/{key}")).status_code == 404, "nothing published"
    not_json = await browser.post(
        "/console/publish", data={"definition": "{", "csrf": token, "action": "check"}
    )
    assert not_json.status_code == 422 and "not JSON" in not_json.text

    good = json.dumps(console_journey(key))
    check = await browser.post(
        "/console/publish", data={"definition": good, "csrf": token, "action": "check"}
    )
    assert check.status_code == 200 and "No problems: ready to publish" in check.text
    published = await browser.post(
        "/console/publish", data={"definition": good, "csrf": token, "action": "publish"}
    )
    assert published.status_code == 303
    assert published.headers["location"] == f"/console/journeys/{key}?published=1"
    assert (await stack.http.get(f"/journeys/{key}")).json()["version"] == 1
    # Editing starts from the latest definition.
    edit = await browser.get(f"/console/publish?from={key}")
    assert "opened-nudge" in edit.text and "&lt;b&gt;mail&lt;/b&gt;" in edit.text


async def test_graph_counts_and_participant_page(stack: Stack, browser: httpx.AsyncClient) -> None:
    key = f"console-{uuid.uuid4().hex[:8]}"
    response = await stack.http.post("/journeys", json=console_journey(key))
    assert response.status_code == 201, response.text
    contacts = [await create_contact(stack.http, first_name=f"P{i}") for i in range(3)]
    await enrol(stack.http, key, *contacts)
    for contact in contacts:
        await wait_for_step(stack.http, key, contact, "wait_click")

    async def counted() -> dict[str, Any]:
        return dict((await browser.get(f"/console/journeys/{key}/counts.json")).json())

    counts = await eventually(counted, lambda c: c["steps"]["wait_click"]["here"] == 3)
    assert counts["steps"]["welcome"] == {"here": 0, "passed": 3}
    assert counts["steps"]["thanks"] == {"here": 0, "passed": 0}
    assert counts["summary"]["running"] == 3

    page = await browser.get(f"/console/journeys/{key}")
    assert page.status_code == 200
    found = boxes(page.text)
    assert set(found) >= {"welcome", "wait_click", "thanks", "end", "welcome/follow_ups/0/tag"}
    assert number(found["wait_click"], "data-here") == 3
    assert number(found["welcome"], "data-passed") == 3
    # The title is shown, escaped.
    assert "Welcome &lt;b&gt;mail&lt;/b&gt;" in page.text and "<b>mail</b>" not in page.text
    # The journeys list counts them too.
    listing = await browser.get("/console/journeys")
    row = re.search(rf'<tr data-journey="{key}">.*?</tr>', listing.text, re.S)
    assert row and re.search(r'data-count="running">3<', row.group(0))
    # Who is at the step.
    at_step = await browser.get(f"/console/journeys/{key}?step=wait_click")
    assert all(contact in at_step.text for contact in contacts)

    person = await browser.get(f"/console/journeys/{key}/participants/{contacts[0]}")
    assert person.status_code == 200
    text = person.text
    assert 'id="status">running<' in text and 'id="current-step">wait_click<' in text
    # The same words as the web UI's current details (its built-in query).
    workflow_id = f"journey/{key}/{contacts[0]}"
    metadata = await stack.temporal.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    assert "Waiting" in metadata.current_details
    assert metadata.current_details.replace("**", "") in said(person)
    assert "Welcome P0" in text  # the message's subject
    assert f"/namespaces/default/workflows/{workflow_id}/" in text
    missing = await browser.get(f"/console/journeys/{key}/participants/{uuid.uuid4()}")
    assert missing.status_code == 404 and "was never enrolled" in missing.text


async def test_with_temporal_down_the_pages_say_so(stack: Stack) -> None:
    """Counts need Temporal: their pages answer 503 as a page naming it; the pages that
    need only PostgreSQL still work."""
    key = f"console-{uuid.uuid4().hex[:8]}"
    assert (await stack.http.post("/journeys", json=console_journey(key))).status_code == 201
    down = stack.settings.model_copy(update={"temporal_address": f"127.0.0.1:{_closed_port()}"})
    async with api_on(down) as http:
        http.headers.pop("Authorization")
        signed = await http.post("/console/sign-in", data={"key": API_KEY})
        assert signed.status_code == 303
        page = await http.get(f"/console/journeys/{key}")
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert page.headers["content-type"].startswith("text/html")
        assert "Temporal is unavailable; try again in a few seconds" in page.text
        assert (await http.get("/console/contacts")).status_code == 200
