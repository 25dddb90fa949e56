"""Campaigns on the real stack: a selection, an action with a mail and a follow-up,
contacts left out before generating, generation as an operation, records in the
dossier, costs and results; then what generating again and bad input do."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import Stack
from tests.helpers import api_on, create_contact, links_in, query_selection, read_mail
from tests.test_bulk_enrolment import sleeper, wait_for_operation
from tests.test_e2e_followups import until
from tests.test_hardening import _closed_port


async def _tagged_selection(http: httpx.AsyncClient, tag: str) -> str:
    key = f"camp-sel-{tag}"
    await query_selection(http, key, "camp_tag", tag, name="Campaign targets")
    return key


def invitation(tag: str) -> dict[str, Any]:
    return {
        "subject": f"You are invited {tag}, {{{{ contact.first_name }}}}",
        "html": '<p>Join us: <a href="https://example.com/seminar">sign up</a></p>',
        "follow_ups": [
            {
                "key": "interested",
                "on": "clicked",
                "start": "mark",
                "steps": {
                    "mark": {
                        "type": "update_contact",
                        "set": {"last_name": "Interested"},
                        "next": "end",
                    },
                    "end": {"type": "end"},
                },
            }
        ],
    }


async def test_a_campaign_from_selection_to_cost(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    selection = await _tagged_selection(http, tag)
    emails = [f"camp{i}-{tag}@example.com" for i in range(6)]
    members = [await create_contact(http, email=e, fields={"camp_tag": tag}) for e in emails]
    outsider = await create_contact(http, fields={"camp_tag": "elsewhere"})
    campaign = f"spring-{tag}"

    created = await http.post(
        "/campaigns", json={"key": campaign, "name": "Spring seminar", "fixed_cost": 500}
    )
    assert created.status_code == 201, created.text
    action = await http.post(
        f"/campaigns/{campaign}/actions",
        json={
            "key": "invite",
            "selection": selection,
            "record_type": "outgoing_mail",
            "subject": "Invitation",
            "per_destination": True,
            "done": False,
            "cost_per_contact": 0.85,
            "message": invitation(tag),
        },
    )
    assert action.status_code == 201, action.text
    assert action.json()["generated"] is False and action.json()["mail_journey"]

    # Before generating: everyone in the selection, linked; one left out.
    base = f"/campaigns/{campaign}/actions/invite"
    listed = (await http.get(f"{base}/contacts")).json()
    assert listed["count"] == 6 and listed["unlinked"] == 0
    assert {c["contact_id"] for c in listed["contacts"]} == set(members)
    left_out = members[0]
    unlinked = await http.post(f"{base}/contacts/{left_out}/unlink")
    assert unlinked.status_code == 200 and unlinked.json()["linked"] is False
    again = await http.post(f"{base}/contacts/{members[1]}/unlink")
    assert again.status_code == 200
    relinked = await http.post(f"{base}/contacts/{members[1]}/link")
    assert relinked.json() == {"contact_id": members[1], "linked": True}
    not_member = await http.post(f"{base}/contacts/{outsider}/unlink")
    assert not_member.status_code == 404, not_member.text
    listed = (await http.get(f"{base}/contacts", params={"limit": 2})).json()
    assert listed["unlinked"] == 1 and listed["next_cursor"]

    generated = await http.post(f"{base}/generate")
    assert generated.status_code == 202, generated.text
    op = await wait_for_operation(http, generated.json()["operation_id"])
    assert op["status"] == "completed", op
    assert (op["total"], op["counts"]) == (5, {"records": 5, "sent": 5}), op

    reached = [e for e in emails if e != emails[0]]
    mails = {e: await read_mail(http, e, f"You are invited {tag}, Ann") for e in reached}
    assert stack.mail_to(emails[0]) == [], "the unlinked contact was mailed"
    entries = (await http.get(f"/contacts/{members[2]}/dossier")).json()["entries"]
    records = [e for e in entries if e["kind"] == "campaign_record"]
    assert [(r["title"], r["status"], r["details"]["campaign"]) for r in records] == [
        ("Invitation", "open", campaign)
    ]
    assert any(e["kind"] == "message" for e in entries)
    left_out_entries = (await http.get(f"/contacts/{left_out}/dossier")).json()["entries"]
    assert not [e for e in left_out_entries if e["kind"] == "campaign_record"]

    # Asking again answers the same operation; nothing more is made or sent.
    second = await http.post(f"{base}/generate")
    assert second.status_code == 202
    assert second.json()["operation_id"] == generated.json()["operation_id"]
    fixed = await http.post(f"{base}/contacts/{left_out}/link")
    assert fixed.status_code == 409, fixed.text
    changed = await http.post(
        f"/campaigns/{campaign}/actions",
        json={"key": "invite", "selection": selection, "record_type": "x", "subject": "y"},
    )
    assert changed.status_code == 409, changed.text

    # A click on the invitation: the action's follow-up runs for that contact.
    clicker = reached[0]
    (link,) = [u for u in links_in(mails[clicker]) if "/t/c/" in u]
    async with httpx.AsyncClient() as reader:
        assert (await reader.get(link)).status_code == 302

    async def interested() -> bool:
        contact = (await http.get(f"/contacts/{members[1]}")).json()
        return bool(contact["last_name"] == "Interested")

    await until(interested, "the follow-up of the campaign mail")

    booked = await http.post(
        f"/campaigns/{campaign}/costs", json={"description": "Printing", "amount": 120}
    )
    assert booked.status_code == 201, booked.text
    view = (await http.get(f"/campaigns/{campaign}")).json()
    assert (view["fixed_cost"], view["variable_cost"], view["actual_cost"]) == (500, 4.25, 120)
    assert view["total_cost"] == 624.25 and view["currency"] == "EUR"
    (invite,) = view["actions"]
    assert invite["generated"] and invite["contacts"] == 5 and invite["variable_cost"] == 4.25
    assert invite["results"]["sent"] == 5 and invite["results"]["clicked"] == 1
    assert len(stack.mail_to(reached[1])) == 1


async def test_one_record_for_the_whole_action_and_an_action_that_enrols(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    selection = await _tagged_selection(http, tag)
    members = [await create_contact(http, fields={"camp_tag": tag}) for _ in range(3)]
    campaign = f"fair-{tag}"
    await http.post("/campaigns", json={"key": campaign, "name": "Trade fair"})
    journey = f"fair-journey-{tag}"
    response = await http.post("/journeys", json=sleeper(journey))
    assert response.status_code == 201, response.text
    for body in (
        {
            "key": "booth",
            "record_type": "note",
            "subject": "Booth booked",
            "per_destination": False,
            "done": True,
            "cost_per_contact": 2,
        },
        {"key": "follow", "record_type": "task", "subject": "Follow up", "journey": journey},
    ):
        response = await http.post(
            f"/campaigns/{campaign}/actions", json={**body, "selection": selection}
        )
        assert response.status_code == 201, response.text
        started = await http.post(f"/campaigns/{campaign}/actions/{body['key']}/generate")
        op = await wait_for_operation(http, started.json()["operation_id"])
        assert op["status"] == "completed", op
    view = (await http.get(f"/campaigns/{campaign}")).json()
    booth, follow = view["actions"]
    assert booth["contacts"] == 3 and booth["variable_cost"] == 6
    assert follow["results"] == {"records": 3, "enrolled": 3}
    one_record = await stack.pool.fetch(
        "SELECT contact_id, done FROM campaign_records WHERE campaign_key = $1 "
        "AND action_key = 'booth'",
        campaign,
    )
    assert [(r["contact_id"], r["done"]) for r in one_record] == [(None, True)]
    for contact_id in members:
        view = (await http.get(f"/journeys/{journey}/participants/{contact_id}")).json()
        assert view["status"] == "running", view


async def test_what_a_campaign_refuses(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    campaign = f"bad-{tag}"
    await http.post("/campaigns", json={"key": campaign, "name": "Bad"})
    selection = await _tagged_selection(http, tag)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"selection": "no-such"}, ["body", "selection"]),
        ({"selection": selection, "journey": "no-such"}, ["body", "journey"]),
        (
            {"selection": selection, "message": {"subject": "Hi", "html": "{{ contact.x "}},
            ["body", "message", "html"],
        ),
        ({"selection": selection, "message": {"html": "<p>x</p>"}}, ["body", "message", "subject"]),
    ]
    for extra, loc in cases:
        response = await http.post(
            f"/campaigns/{campaign}/actions",
            json={"key": "a", "record_type": "note", "subject": "S", **extra},
        )
        assert response.status_code == 422, response.text
        assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.text
    negative = await http.post("/campaigns", json={"key": campaign, "name": "B", "fixed_cost": -1})
    assert negative.status_code == 422
    missing = await http.get(f"/campaigns/no-such-{tag}")
    assert missing.status_code == 404


async def test_generating_while_temporal_is_down_answers_503_and_can_be_asked_again(
    stack: Stack,
) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    selection = await _tagged_selection(http, tag)
    await create_contact(http, fields={"camp_tag": tag})
    campaign = f"down-{tag}"
    await http.post("/campaigns", json={"key": campaign, "name": "Down"})
    action = {"key": "a", "selection": selection, "record_type": "note", "subject": "S"}
    assert (await http.post(f"/campaigns/{campaign}/actions", json=action)).status_code == 201
    down = stack.settings.model_copy(update={"temporal_address": f"127.0.0.1:{_closed_port()}"})
    async with api_on(down) as unavailable:
        answer = await unavailable.post(f"/campaigns/{campaign}/actions/a/generate")
    assert answer.status_code == 503, answer.text
    # Nothing was left half-done: the action can still change, and be generated.
    view = (await http.get(f"/campaigns/{campaign}")).json()
    assert view["actions"][0]["operation_id"] is None, view
    started = await http.post(f"/campaigns/{campaign}/actions/a/generate")
    assert started.status_code == 202, started.text
    op = await wait_for_operation(http, started.json()["operation_id"])
    assert op["counts"] == {"records": 1}, op


async def test_after_a_failed_generation_the_action_is_generated_again(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    selection = await _tagged_selection(http, tag)
    member = await create_contact(http, fields={"camp_tag": tag})
    campaign = f"again-{tag}"
    await http.post("/campaigns", json={"key": campaign, "name": "Again"})
    action = {"key": "a", "selection": selection, "record_type": "note", "subject": "S"}
    await http.post(f"/campaigns/{campaign}/actions", json=action)
    # A generation that failed (as when its selection's field was dropped meanwhile).
    failed = uuid.uuid4()
    await stack.pool.execute(
        """INSERT INTO operations (id, kind, subject, request_key, status, errors)
           VALUES ($1, 'generate_action', $2, $3, 'failed', '[{"reason": "broken"}]')""",
        failed,
        {"campaign": campaign, "action": "a", "selection": selection},
        f"generate/{campaign}/a",
    )
    await stack.pool.execute(
        "UPDATE campaign_actions SET operation_id = $1 WHERE campaign_key = $2",
        failed,
        campaign,
    )
    # It fixes nothing: the action changes, its contacts too, and it is generated anew.
    changed = await http.post(f"/campaigns/{campaign}/actions", json={**action, "subject": "T"})
    assert changed.status_code == 200, changed.text
    unlinked = await http.post(f"/campaigns/{campaign}/actions/a/contacts/{member}/unlink")
    relinked = await http.post(f"/campaigns/{campaign}/actions/a/contacts/{member}/link")
    assert (unlinked.status_code, relinked.status_code) == (200, 200)
    again = await http.post(f"/campaigns/{campaign}/actions/a/generate")
    assert again.status_code == 202 and again.json()["operation_id"] != str(failed)
    done = await wait_for_operation(http, again.json()["operation_id"])
    assert done["status"] == "completed" and done["counts"] == {"records": 1}, done
    dossier = (await http.get(f"/contacts/{member}/dossier")).json()["entries"]
    assert [e["title"] for e in dossier if e["kind"] == "campaign_record"] == ["T"]
    # Now it is generated for good.
    fixed = await http.post(f"/campaigns/{campaign}/actions", json=action)
    assert fixed.status_code == 409, fixed.text
