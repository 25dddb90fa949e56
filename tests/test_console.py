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
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
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


async def post_sign_in(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    """The sign-in form as a browser sends it: opened first, its token along."""
    form = await client.get("/console/sign-in")
    token = re.search(r'name="token" value="([0-9a-f]+)"', form.text)
    assert token, "the sign-in form carries its token"
    return await client.post("/console/sign-in", data={**data, "token": token.group(1)})


async def signed_in(stack: Stack, key: str) -> httpx.AsyncClient:
    browser = httpx.AsyncClient(base_url=stack.base_url)
    response = await post_sign_in(browser, key=key, next="/console")
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


def number_text(box: ET.Element, attribute: str) -> str:
    found = [e for e in box.iter() if attribute in e.attrib]
    assert len(found) == 1, f"one element with {attribute}"
    return "".join(found[0].itertext())


def number(box: ET.Element, attribute: str) -> int:
    return int(number_text(box, attribute))


async def test_signing_in_and_out(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        page = await anonymous.get("/console/journeys?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fjourneys%3Fx%3D1"
        wrong = await post_sign_in(anonymous, key="jk_" + "a" * 43)
        assert wrong.status_code == 401 and "invalid API key" in wrong.text
        empty = await post_sign_in(anonymous, key=" ")
        assert empty.status_code == 401 and "enter an API key" in empty.text
        # Without the form's token (another site posting it): no session.
        forged = await anonymous.post("/console/sign-in", data={"key": API_KEY})
        assert forged.status_code == 403 and "stale or from another site" in forged.text
        assert "journeys_console=" not in forged.headers.get("set-cookie", "")
        right = await post_sign_in(anonymous, key=API_KEY, next="/console/journeys?x=1")
        assert right.status_code == 303 and right.headers["location"] == "/console/journeys?x=1"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        assert API_KEY not in cookie
        # Never back to another site.
        elsewhere = await post_sign_in(anonymous, key=API_KEY, next="//evil.example/x")
        assert elsewhere.headers["location"] == "/console/journeys"
        home = await anonymous.get("/console/journeys")
        assert home.status_code == 200
        nav = re.search(r"<nav>.*?</nav>", home.text, re.S)
        assert nav, "signed in, the page has the navigation"
        for section in ("journeys", "contacts", "messages", "campaigns", "recurring-sends"):
            assert f'href="/console/{section}"' in nav.group(0), section
            assert (await anonymous.get(f"/console/{section}")).status_code == 200, section
        # A forged cookie is no session.
        genuine = anonymous.cookies["journeys_console"]
        anonymous.cookies.set("journeys_console", "x" + genuine)
        assert (await anonymous.get("/console/journeys")).status_code == 303
        anonymous.cookies.set("journeys_console", genuine)
        # Signing out takes the page's own form: another site cannot sign anyone out.
        refused = await anonymous.post("/console/sign-out")
        assert refused.status_code == 403 and "stale or from another site" in said(refused)
        assert (await anonymous.get("/console/journeys")).status_code == 200
        out = await anonymous.post("/console/sign-out", data={"csrf": csrf_of(home.text)})
        assert out.status_code == 303 and "journeys_console=" in out.headers["set-cookie"]
        assert (await anonymous.get("/console/journeys")).status_code == 303
    # The session ended on the server: a copy of its cookie signs nobody in.
    async with httpx.AsyncClient(base_url=stack.base_url) as copied:
        copied.cookies.set("journeys_console", genuine, path="/console")
        again = await copied.get("/console/journeys", follow_redirects=True)
        assert "this session was signed out" in said(again)
    # Without a cookie there is nothing to end: to the sign-in form, no cookie touched.
    async with httpx.AsyncClient(base_url=stack.base_url) as nobody:
        out = await nobody.post("/console/sign-out")
        assert out.status_code == 303 and "set-cookie" not in out.headers


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
    shown = await browser.get(published.headers["location"])
    assert "Published version 1." in shown.text and "worth a look" not in shown.text
    # A typing error in a field name publishes, and the page that follows says so.
    typo = console_journey(key)
    typo["exit_if"] = {"field": "unsubscirbed", "op": "eq", "value": True}
    again = await browser.post(
        "/console/publish",
        data={"definition": json.dumps(typo), "csrf": token, "action": "publish"},
        follow_redirects=True,
    )
    assert again.status_code == 200 and "Published version 2." in again.text
    assert "exit_if: field &#39;unsubscirbed&#39; is not a declared contact field" in again.text
    # Only right after publishing: the version's page later, or an older one, says nothing.
    assert "worth a look" not in (await browser.get(f"/console/journeys/{key}")).text
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
    async def row() -> str:
        listing = await browser.get("/console/journeys")
        found = re.search(rf'<tr data-journey="{key}">.*?</tr>', listing.text, re.S)
        return found.group(0) if found else ""

    assert re.search(r'data-count="running">3<', await eventually(row, lambda r: "data-count" in r))
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
    # The web UI takes the workflow id as one path segment (a raw one is its 404).
    assert f"/namespaces/default/workflows/{quote(workflow_id, safe='')}/" in text
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
        signed = await post_sign_in(http, key=API_KEY)
        assert signed.status_code == 303
        page = await http.get(f"/console/journeys/{key}")
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert page.headers["content-type"].startswith("text/html")
        assert "Temporal is unavailable; try again in a few seconds" in page.text
        assert (await http.get("/console/contacts")).status_code == 200


def outcome_journey(key: str) -> dict[str, Any]:
    """welcome (a follow-up on `sent`) -> wait for the event `go` -> end."""
    return journey(
        key,
        steps={
            "welcome": {
                "type": "send_email",
                "subject": "Hi",
                "html": "<p>hi</p>",
                "next": "wait_go",
                "follow_ups": [
                    {
                        "key": "tag-sent",
                        "on": "sent",
                        "start": "tag",
                        "steps": {
                            "tag": {
                                "type": "update_contact",
                                "set": {"tagged": True},
                                "next": "done",
                            },
                            "done": {"type": "end"},
                        },
                    }
                ],
            },
            "wait_go": {
                "type": "wait_for_event",
                "event": "custom",
                "name": "go",
                "timeout": "P30D",
                "on_event": "end",
                "on_timeout": "end",
            },
            "end": {"type": "end"},
        },
    )


async def test_counts_by_outcome_and_who_went_through(
    stack: Stack, browser: httpx.AsyncClient
) -> None:
    """Four participants: one completes, one is removed through the API, one's run is
    terminated by an operator, one waits. The summary, the listings by outcome and the
    numbers on the steps (a removed run did not go through its step) agree."""
    key = f"outcomes-{uuid.uuid4().hex[:6]}"
    assert (await stack.http.post("/journeys", json=outcome_journey(key))).status_code == 201
    done, removed, terminated, waiting = [await create_contact(stack.http) for _ in range(4)]
    await enrol(stack.http, key, done, removed, terminated, waiting)
    for contact in (done, removed, terminated, waiting):
        await wait_for_step(stack.http, key, contact, "wait_go")
    posted = await stack.http.post("/events", json={"contact_id": done, "name": "go"})
    assert posted.status_code == 202
    assert (await stack.http.delete(f"/journeys/{key}/participants/{removed}")).status_code == 200
    await stack.temporal.get_workflow_handle(f"journey/{key}/{terminated}").terminate("test")

    async def counted() -> dict[str, Any]:
        return dict((await browser.get(f"/console/journeys/{key}/counts.json")).json())

    counts = await eventually(
        counted,
        lambda c: (
            c["summary"]
            == {
                "running": 1,
                "completed": 1,
                "exited": 0,
                "removed": 1,
                "failed": 0,
                "terminated": 1,
            }
            and c["follow_ups"]["welcome/follow_ups/0"] == 4
            and c["steps"]["welcome/follow_ups/0/tag"]["passed"] == 4
        ),
        timeout=30,
    )
    steps = counts["steps"]
    assert steps["welcome"] == {"here": 0, "passed": 4}
    # Waiting: one here; went through: only who got the event (removed and terminated
    # runs stopped there).
    assert steps["wait_go"] == {"here": 1, "passed": 1}
    assert steps["end"] == {"here": 0, "passed": 1}
    assert steps["welcome/follow_ups/0/done"] == {"here": 0, "passed": 4}

    async def listed(status: str) -> set[str]:
        page = (await browser.get(f"/console/journeys/{key}?status={status}")).text
        return {c for c in (done, removed, terminated, waiting) if c in page}

    assert await listed("running") == {waiting}
    assert await listed("completed") == {done}
    assert await listed("removed") == {removed}
    assert await listed("terminated") == {terminated}
    assert await listed("failed") == set()
    bad = await browser.get(f"/console/journeys/{key}?status=skipped")
    assert bad.status_code == 422


async def test_a_changed_api_key_ends_its_sessions(stack: Stack) -> None:
    browser = await signed_in(stack, API_KEY)
    try:
        changed = stack.settings.model_copy(update={"api_key": SecretStr("another-key")})
        async with api_on(changed) as other:
            other.headers.pop("Authorization")
            other.cookies = browser.cookies
            page = await other.get("/console/journeys")
            assert page.status_code == 303
            assert "configured%20API%20key%20changed" in page.headers["location"]
        assert (await browser.get("/console/journeys")).status_code == 200
    finally:
        await browser.aclose()


async def test_odd_input_gets_a_page_saying_what_is_wrong(browser: httpx.AsyncClient) -> None:
    for target in (
        "/console/../c/token",
        "/console/%2e%2e/c/token",
        "/console/x\\y",
        "https://x.example/",
    ):
        answer = await post_sign_in(browser, key=API_KEY, next=target)
        assert answer.headers["location"] == "/console/journeys", target
    assert (await browser.get("/console/contacts?q=a%00b")).status_code == 422
    form = await browser.get("/console/publish")
    deep = await browser.post(
        "/console/publish",
        data={"definition": "[" * 100_000, "csrf": csrf_of(form.text), "action": "check"},
    )
    assert deep.status_code == 422 and "nested too deeply" in deep.text
    schema = await browser.get("/console/publish/schema.json")
    assert schema.status_code == 200 and "steps" in schema.json()["properties"]
    assert 'href="/console/publish/schema.json"' in form.text


async def test_a_page_does_not_wait_long_for_its_counts(
    stack: Stack, browser: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts that take longer than the page may wait show as "…": the live refresh
    fills them in, and without scripts the page reloads itself."""
    from api.console.routes import journeys as pages

    monkeypatch.setattr(pages, "PAGE_WAIT_SECONDS", 0.0)
    key = f"console-{uuid.uuid4().hex[:8]}"
    assert (await stack.http.post("/journeys", json=console_journey(key))).status_code == 201
    page = await browser.get(f"/console/journeys/{key}")
    assert page.status_code == 200
    assert number_text(boxes(page.text)["welcome"], "data-here") == "…"
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in page.text
    assert "data-pending" in page.text
    listing = await browser.get("/console/journeys")
    assert f'<tr data-journey="{key}">' in listing.text
    counts = (await browser.get(f"/console/journeys/{key}/counts.json")).json()
    assert counts["steps"]["welcome"] == {"here": 0, "passed": 0}
    again = await browser.get(f"/console/journeys/{key}")  # counted now: no "…"
    assert number(boxes(again.text)["welcome"], "data-here") == 0
    assert "data-pending" not in again.text and "http-equiv" not in again.text


async def test_sessions_past_their_cookies_age_are_deleted(stack: Stack) -> None:
    from datetime import timedelta

    from journeys.store import console_sessions

    old, recent = uuid.uuid4(), uuid.uuid4()
    await stack.pool.execute(
        """INSERT INTO console_sessions (id, started_at)
           VALUES ($1, now() - interval '13 hours'), ($2, now() - interval '11 hours')""",
        old,
        recent,
    )
    new = await console_sessions.start_session(stack.pool, timedelta(hours=12))
    assert not await console_sessions.session_is_open(stack.pool, old)
    assert await console_sessions.session_is_open(stack.pool, recent)
    assert await console_sessions.session_is_open(stack.pool, new)
    left = await stack.pool.fetchval(
        "SELECT count(*) FROM console_sessions WHERE id = ANY($1::uuid[])", [old, recent, new]
    )
    assert left == 2
