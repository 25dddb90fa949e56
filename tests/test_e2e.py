"""The whole path on real parts: API over HTTP -> Temporal dev server -> worker ->
PostgreSQL and SMTP -> the sink -> a tracked link -> a signal -> the next step."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from temporalio.api.sdk.v1 import WorkflowMetadata

from journeys.store.contacts import get_contact
from tests.builders import journey, linear_journey, mail, wait
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    delivered_event,
    enrol,
    links_in,
    participant,
    pixel_in,
    publish,
    read_mail,
    wait_for_step,
    wait_until_done,
)


def follow_up_journey(key: str, timeout: str = "P3D") -> dict[str, Any]:
    """mail -> wait for a click -> branch on the click -> second mail or field update."""
    return journey(
        key,
        name="Follow-up",
        start="mail1",
        steps={
            "mail1": {
                "type": "send_email",
                "subject": "Hi {{ contact.first_name }}",
                "html": '<p>See <a href="https://example.com/pricing">pricing</a> or '
                '<a href="https://example.com/faq">the FAQ</a></p>',
                "next": "wait_click",
            },
            "wait_click": {
                "type": "wait_for_event",
                "event": "clicked",
                "message": "mail1",
                "timeout": timeout,
                "on_event": "check",
                "on_timeout": "check",
            },
            "check": {
                "type": "branch",
                "if": {"message": "mail1", "event": "clicked"},
                "then": "mail2",
                "else": "mark_cold",
            },
            "mail2": {
                "type": "send_email",
                "subject": "Thanks for looking, {{ contact.first_name }}",
                "html": "<p>Call us</p>",
                "next": "done",
            },
            "mark_cold": {"type": "update_contact", "set": {"cold": True}, "next": "done"},
            "done": {"type": "end"},
        },
    )


async def test_click_takes_the_follow_up_path(stack: Stack) -> None:
    http = stack.http
    version = await publish(http, follow_up_journey("e2e-click"))
    email = f"click-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email, first_name="Ann")
    enrolment = await enrol(http, "e2e-click", contact)
    assert enrolment["enrolments"][0]["status"] == "enrolled"
    assert enrolment["enrolments"][0]["workflow_id"] == f"journey/e2e-click/{contact}"

    msg = await read_mail(http, email, "Hi Ann")
    assert msg["List-Unsubscribe"].strip().startswith(f"<{stack.base_url}/t/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = links_in(msg)
    assert len(links) == 2 and all(link.startswith(f"{stack.base_url}/t/c/") for link in links)
    assert "https://example.com/pricing" not in str(msg.get_body(("html",)))
    assert "pricing" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    await wait_for_step(http, "e2e-click", contact, "wait_click")

    async with httpx.AsyncClient() as browser:
        opened = await browser.get(pixel_in(msg))
        assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
        clicked = await browser.get(links[0])
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://example.com/pricing"

    await read_mail(http, email, "Thanks for looking, Ann")
    view = await wait_until_done(http, "e2e-click", contact)
    assert view["status"] == "completed"
    assert view["version"] == version
    assert [h["step"] for h in view["history"]] == ["mail1", "wait_click", "check", "mail2", "done"]
    assert [h["outcome"] for h in view["history"][:3]] == ["sent", "clicked", "then"]
    first = view["messages"][0]
    assert first["step"] == "mail1" and first["status"] == "sent"
    assert {e["kind"] for e in first["events"]} == {"opened", "clicked"}
    assert [e["url"] for e in first["events"] if e["kind"] == "clicked"] == [
        "https://example.com/pricing"
    ]
    contact_now = await get_contact(stack.pool, uuid.UUID(contact))
    assert contact_now is not None and "cold" not in contact_now.fields


async def test_a_click_in_the_plain_text_part_counts(stack: Stack) -> None:
    http = stack.http
    journey = follow_up_journey("e2e-text-click")
    journey["steps"]["mail1"]["text"] = (
        "Hi {{ contact.first_name }}, prices: https://example.com/pricing."
    )
    await publish(http, journey)
    email = f"text-click-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email, first_name="Ann")
    await enrol(http, "e2e-text-click", contact)
    msg = await read_mail(http, email, "Hi Ann")
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://example.com/pricing" not in plain
    (link,) = re.findall(rf"{re.escape(stack.base_url)}/t/c/[A-Za-z0-9_-]+", plain)
    await wait_for_step(http, "e2e-text-click", contact, "wait_click")
    async with httpx.AsyncClient() as reader:
        clicked = await reader.get(link)
    assert clicked.status_code == 302
    assert clicked.headers["location"] == "https://example.com/pricing"
    await read_mail(http, email, "Thanks for looking, Ann")
    view = await wait_until_done(http, "e2e-text-click", contact)
    assert [h["outcome"] for h in view["history"][:3]] == ["sent", "clicked", "then"]


async def test_no_click_takes_the_timeout_path(stack: Stack) -> None:
    # The dev server runs in real time, so the timeout here is seconds; the
    # three-day timeout itself is covered on the time-skipping server.
    http = stack.http
    await publish(http, follow_up_journey("e2e-timeout", timeout="PT2S"))
    email = f"quiet-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email, first_name="Bob")
    await enrol(http, "e2e-timeout", contact)
    await read_mail(http, email, "Hi Bob")

    view = await wait_until_done(http, "e2e-timeout", contact)
    assert view["status"] == "completed"
    assert [h["step"] for h in view["history"]] == [
        "mail1",
        "wait_click",
        "check",
        "mark_cold",
        "done",
    ]
    assert [h["outcome"] for h in view["history"][:3]] == ["sent", "timeout", "else"]
    stored = (await http.get(f"/contacts/{contact}")).json()
    assert stored["fields"]["cold"] is True
    assert not [m for m in stack.mail_to(email) if m["subject"].startswith("Thanks")]


async def test_participants_keep_the_version_they_entered(stack: Stack) -> None:
    http = stack.http
    v1: dict[str, Any] = journey(
        "e2e-pinned",
        name="Pinned",
        start="pause",
        steps={
            "pause": {"type": "wait", "duration": "PT2S", "next": "mail"},
            "mail": {
                "type": "send_email",
                "subject": "Version one",
                "html": "<p>1</p>",
                "next": "end",
            },
            "end": {"type": "end"},
        },
    )
    assert await publish(http, v1) == 1
    email = f"pinned-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, "e2e-pinned", contact)

    v2 = {**v1, "steps": {**v1["steps"], "mail": {**v1["steps"]["mail"], "subject": "Version two"}}}
    assert await publish(http, v2) == 2
    # Enrolling again while the run is open gives the same run, still on version 1.
    again = (await enrol(http, "e2e-pinned", contact))["enrolments"][0]
    assert again["status"] == "already_enrolled" and again["version"] == 1

    view = await wait_until_done(http, "e2e-pinned", contact)
    assert view["version"] == 1 and view["status"] == "completed"
    await read_mail(http, email, "Version one")
    assert not [m for m in stack.mail_to(email) if m["subject"] == "Version two"]

    shown = (await http.get("/journeys/e2e-pinned")).json()
    assert shown["version"] == 2 and [v["version"] for v in shown["versions"]] == [1, 2]


async def test_branch_on_profile_field_and_custom_event(stack: Stack) -> None:
    http = stack.http
    await publish(
        http,
        journey(
            "e2e-plan",
            name="Plan",
            start="is_pro",
            steps={
                "is_pro": {
                    "type": "branch",
                    "if": {"field": "plan", "op": "eq", "value": "pro"},
                    "then": "wait_order",
                    "else": "end",
                },
                "wait_order": {
                    "type": "wait_for_event",
                    "event": "custom",
                    "name": "order_placed",
                    "timeout": "P30D",
                    "on_event": "thank",
                    "on_timeout": "end",
                },
                "thank": {
                    "type": "update_contact",
                    "set": {"plan": "customer", "first_name": "Pro"},
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    pro = await create_contact(http, fields={"plan": "pro"})
    free = await create_contact(http, fields={"plan": "free"})
    await enrol(http, "e2e-plan", pro, free)

    assert [h["outcome"] for h in (await wait_until_done(http, "e2e-plan", free))["history"]] == [
        "else",
        None,
    ]
    await wait_for_step(http, "e2e-plan", pro, "wait_order")
    posted = await http.post(
        "/events", json={"contact_id": pro, "name": "order_placed", "data": {"total": 12.5}}
    )
    assert posted.status_code == 202, posted.text
    delivery = await delivered_event(http, posted.json()["id"])
    assert delivery["delivered_to"] == [f"journey/e2e-plan/{pro}"]
    assert delivery["data"] == {"total": 12.5} and delivery["attempts"] == 1
    view = await wait_until_done(http, "e2e-plan", pro)
    assert [h["step"] for h in view["history"]] == ["is_pro", "wait_order", "thank", "end"]
    stored = (await http.get(f"/contacts/{pro}")).json()
    assert stored["fields"]["plan"] == "customer" and stored["first_name"] == "Pro"


async def test_unsubscribe_stops_later_mail(stack: Stack) -> None:
    http = stack.http
    await publish(
        http,
        linear_journey(
            "e2e-unsub",
            "Unsub",
            ("first", mail("First", "<p>1</p>")),
            ("pause", wait("PT3S")),
            ("second", mail("Second", "<p>2</p>")),
        ),
    )
    email = f"unsub-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, "e2e-unsub", contact)
    msg = await read_mail(http, email, "First")
    url = msg["List-Unsubscribe"].strip().strip("<>")
    async with httpx.AsyncClient() as mail_client:
        page = await mail_client.get(url)  # a link scanner's GET changes nothing
        assert page.status_code == 200 and "<form" in page.text
        assert (await http.get(f"/contacts/{contact}")).json()["unsubscribed_at"] is None
        done = await mail_client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
    assert (await http.get(f"/contacts/{contact}")).json()["unsubscribed_at"] is not None

    view = await wait_until_done(http, "e2e-unsub", contact)
    assert view["history"][2]["outcome"] == "skipped: unsubscribed"
    assert [m["status"] for m in view["messages"]] == ["sent", "skipped"]
    assert not [m for m in stack.mail_to(email) if m["subject"] == "Second"]


async def test_enrolling_many_at_once_and_twice(stack: Stack) -> None:
    http = stack.http
    await publish(
        http,
        journey(
            "e2e-bulk",
            name="Bulk",
            start="pause",
            steps={
                "pause": {"type": "wait", "duration": "P1Y", "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    contacts = [await create_contact(http) for _ in range(20)]
    first = await enrol(http, "e2e-bulk", *contacts)
    assert [e["status"] for e in first["enrolments"]] == ["enrolled"] * 20
    second = await enrol(http, "e2e-bulk", *contacts)
    assert [e["status"] for e in second["enrolments"]] == ["already_enrolled"] * 20
    assert [e["run_id"] for e in second["enrolments"]] == [e["run_id"] for e in first["enrolments"]]
    view = await participant(http, "e2e-bulk", contacts[0])
    assert view["status"] == "running" and view["current_step"] == "pause"

    # Operators find them in the web UI by search attribute (never by address).
    query = "JourneyKey = 'e2e-bulk' AND JourneyStep = 'pause' AND JourneyStatus = 'running'"
    for _ in range(50):
        found = [w async for w in stack.temporal.list_workflows(query)]
        if len(found) == 20:
            break
        await asyncio.sleep(0.2)
    assert sorted(w.id for w in found) == sorted(f"journey/e2e-bulk/{c}" for c in contacts)
    handle = stack.temporal.get_workflow_handle(found[0].id)
    described = await handle.describe()
    assert (
        await described.static_summary()
        == f"Bulk (v1), participant {found[0].id.rsplit('/', 1)[1]}"
    )
    # The web UI's "current details" come from this built-in query.
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "Waiting at `pause` until" in metadata.current_details
