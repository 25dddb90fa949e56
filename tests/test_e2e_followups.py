"""Follow-ups on the real stack: the three rules of the issue's example on one mail,
fired by real tracking hits, a signed delivery webhook and a real one-click
unsubscribe, after the journey that sent the mail has ended."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    delivered_event,
    enrol,
    links_in,
    publish,
    read_mail,
    wait_until_done,
)
from tests.test_delivery_errors import report
from tests.test_followups import PRICING, brochure, three_follow_ups


async def until(check: Any, what: str, timeout: float = 30) -> Any:
    for _ in range(int(timeout * 10)):
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def dossier_kinds(http: httpx.AsyncClient, contact: str) -> list[tuple[str, str]]:
    entries = (await http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    return [(e["kind"], e["title"] or e["subject"] or "") for e in entries]


async def test_three_follow_ups_fire_from_real_events(stack: Stack) -> None:
    http = stack.http
    key = f"fu-{uuid.uuid4().hex[:6]}"
    rules = three_follow_ups()
    rules[1]["wait"] = "PT4S"  # the survey's week, shortened
    definition = brochure(key, rules)
    # A personalised parameter on the link: the rule matches it all the same.
    definition["steps"]["mail1"]["html"] = (
        f'<p>See <a href="{PRICING}?ref={{{{ contact.id }}}}">prices</a></p>'
    )
    await publish(http, definition)
    people = {name: f"{name}-{uuid.uuid4().hex[:6]}@example.com" for name in ("ann", "bob", "cy")}
    ids = {name: await create_contact(http, email=email) for name, email in people.items()}
    await enrol(http, key, *ids.values())
    mails = {name: await read_mail(http, email, "Our brochure") for name, email in people.items()}
    for contact in ids.values():  # the journey ends at once; its follow-ups outlive it
        assert (await wait_until_done(http, key, contact))["status"] == "completed"

    async with httpx.AsyncClient() as reader:
        # Ann clicks the pricing link twice: "hot" fires once.
        (link,) = [u for u in links_in(mails["ann"]) if "/t/c/" in u]
        for _ in range(2):
            click = await reader.get(link)
            assert click.status_code == 302
            assert click.headers["location"] == f"{PRICING}?ref={ids['ann']}"
        # Bob unsubscribes with one click before the survey's wait is over.
        unsubscribe = mails["bob"]["List-Unsubscribe"].strip().strip("<>")
        assert (await reader.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})).is_success
    # Cy's address bounces hard, says the provider.
    bounced = await report(
        http, {"message_id": mails["cy"]["Message-ID"], "kind": "hard_bounce", "detail": "5.1.1"}
    )
    assert bounced.json()["status"] == "recorded"

    async def fields_of(name: str) -> dict[str, Any]:
        return dict((await http.get(f"/contacts/{ids[name]}")).json()["fields"])

    async def clicked_once() -> bool:
        return (await fields_of("ann")).get("clicks") == 1

    await until(clicked_once, "ann's click counted")
    await until(lambda: _has(fields_of("cy"), "needs_cleanup"), "cy marked for cleanup")
    # The survey reaches Ann; Bob's is skipped, and his dossier says why.
    await read_mail(http, people["ann"], "How was it?", timeout=30)

    async def bob_skipped() -> bool:
        return any(kind == "follow_up_skipped" for kind, _ in await dossier_kinds(http, ids["bob"]))

    await until(bob_skipped, "bob's survey skipped")
    assert not [m for m in stack.mail_to(people["bob"]) if m["subject"] == "How was it?"]
    await asyncio.sleep(1)  # a late second firing would show by now
    assert (await fields_of("ann"))["clicks"] == 1
    lines = await dossier_kinds(http, ids["ann"])
    fired = sorted(title for kind, title in lines if kind == "follow_up")
    assert fired == [
        "Follow-up 'hot' of mail1 fired (clicked)",
        "Follow-up 'survey' of mail1 fired (sent)",
    ]
    # Each firing is a workflow of its own, found by its search attributes.
    query = f"JourneyFollowUp = 'hot' AND JourneyParticipant = '{ids['ann']}'"
    assert (await stack.temporal.count_workflows(query)).count == 1
    runs = [
        w
        async for w in stack.temporal.list_workflows(
            f"JourneyKey = '{key}' AND JourneyFollowUp = 'survey'"
        )
    ]
    assert len(runs) == 3  # sent to all three; Bob's skipped, Cy's mail skipped at send time


async def _has(fields: Any, name: str) -> bool:
    return bool((await fields).get(name))


async def test_a_click_carries_out_the_link_actions_once(stack: Stack) -> None:
    http = stack.http
    key = f"la-{uuid.uuid4().hex[:6]}"
    selection = f"hot-{uuid.uuid4().hex[:6]}"
    created = await http.post(
        "/selections", json={"key": selection, "name": "Hot leads", "type": "static"}
    )
    assert created.status_code == 201, created.text
    definition = brochure(key, [])
    definition["steps"]["mail1"]["link_actions"] = {
        PRICING: [{"type": "add_to_selection", "selection": selection}]
    }
    definition["steps"]["mail1"]["next"] = "tag"
    definition["steps"]["tag"] = {"type": "add_to_selection", "selection": selection, "next": "end"}
    answer = await http.post("/journeys", json=definition)
    assert answer.status_code == 201, answer.text
    (warning,) = answer.json()["warnings"]
    assert warning["loc"] == ["body", "steps", "tag"]
    assert f"adds to selection '{selection}'" in warning["msg"]
    # Published all the same; without the step, no warning.
    del definition["steps"]["tag"]
    definition["steps"]["mail1"]["next"] = "end"
    answer = await http.post("/journeys", json=definition)
    assert answer.json()["warnings"] == [] and answer.json()["version"] == 2
    email = f"la-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Our brochure")
    (link,) = [u for u in links_in(msg) if "/t/c/" in u]
    async with httpx.AsyncClient() as reader:
        for _ in range(2):
            assert (await reader.get(link)).status_code == 302

    async def member() -> bool:
        page = (await http.get(f"/selections/{selection}/members")).json()
        return contact in page["contact_ids"]

    await until(member, "the clicker in the selection")
    lines = await dossier_kinds(http, contact)
    assert [t for k, t in lines if k == "follow_up"] == [
        "Follow-up 'link-1' of mail1 fired (clicked)"
    ]


async def test_an_event_entry_with_a_wait_and_conditions(stack: Stack) -> None:
    """F5: entering on an event goes through the same dispatcher, wait and conditions."""
    http = stack.http
    key = f"f5-{uuid.uuid4().hex[:6]}"
    definition = brochure(key, [])
    definition["entry"] = {
        "type": "event",
        "name": f"{key}-ordered",
        "schedule_if": {"field": "plan", "op": "eq", "value": "pro"},
        "wait": "PT3S",
        "run_if": {"not": {"field": "unsubscribed", "op": "eq", "value": True}},
    }
    await publish(http, definition)
    free = await create_contact(http, fields={"plan": "free"})
    pro = await create_contact(http, fields={"plan": "pro"})
    leaving = await create_contact(http, fields={"plan": "pro"})
    posted = {}
    for contact in (free, pro, leaving):
        answer = await http.post("/events", json={"contact_id": contact, "name": f"{key}-ordered"})
        assert answer.status_code == 202, answer.text
        posted[contact] = answer.json()["id"]
    (refused,) = (await delivered_event(http, posted[free]))["entries"]
    assert (refused["status"], refused["reason"]) == (
        "refused",
        "the entry's schedule_if does not hold",
    )
    for contact in (pro, leaving):
        (entered,) = (await delivered_event(http, posted[contact]))["entries"]
        assert entered["status"] == "enrolled"
    # Within the wait, one of them unsubscribes (straight in the database, as an
    # unsubscribe link would).
    await stack.pool.execute(
        "UPDATE contacts SET unsubscribed_at = now() WHERE id = $1", uuid.UUID(leaving)
    )
    done = await wait_until_done(http, key, pro)
    assert done["status"] == "completed" and done["messages"][0]["status"] == "sent"
    skipped = await wait_until_done(http, key, leaving)
    assert (skipped["status"], skipped["reason"]) == (
        "skipped",
        "run_if no longer held when the wait was over",
    )
    assert skipped["messages"] == []
