"""The console's campaigns and recurring sends over plain HTTP, as a browser without
JavaScript uses them: a campaign's targets, results and costs, unlinking a contact
and booking a cost with the page's forms; a recurring send's schedule, next runs and
last runs, Live and Stop on its Temporal Schedule; and who may press what."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bench.faults import daytime_zone
from tests.conftest import API_KEY, Stack
from tests.helpers import create_contact, eventually
from tests.test_bulk_enrolment import wait_for_operation
from tests.test_campaigns import _tagged_selection, invitation
from tests.test_console import csrf_of, said, signed_in
from tests.test_recurring import exclusion, recurring_send, run_now, selection


@pytest.fixture
async def browser(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(stack, API_KEY)
    yield client
    await client.aclose()


@pytest.fixture
async def viewer(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in with a key that may only read."""
    made = await stack.http.post(
        "/api-keys", json={"name": f"viewer-{uuid.uuid4().hex[:6]}", "scopes": ["read"]}
    )
    assert made.status_code == 201, made.text
    client = await signed_in(stack, made.json()["key"])
    yield client
    await client.aclose()


def row(page: str, attribute: str, value: str) -> str:
    """The table row whose `attribute` is `value`."""
    found = re.search(rf'<tr {attribute}="{re.escape(value)}".*?</tr>', page, re.S)
    assert found, f"no row {attribute}={value}"
    return found.group(0)


def cell(html_row: str, attribute: str, value: str) -> str:
    found = re.search(rf'{attribute}="{re.escape(value)}"[^>]*>(.*?)<', html_row, re.S)
    assert found, f"no {attribute}={value} in the row"
    return found.group(1).strip()


def linked(page: str) -> dict[str, bool]:
    """The contacts listed for the action: linked or not."""
    return {
        m.group(1): m.group(2) == "yes"
        for m in re.finditer(r'<tr data-contact="([^"]+)" data-linked="(yes|no)">', page)
    }


async def test_a_campaign_page_unlinking_and_costs(
    stack: Stack, browser: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    sel = await _tagged_selection(http, tag)
    emails = [f"cc{i}-{tag}@example.com" for i in range(4)]
    members = [
        await create_contact(http, email=e, first_name=f"M{i}", fields={"camp_tag": tag})
        for i, e in enumerate(emails)
    ]
    outsider = await create_contact(http, fields={"camp_tag": "elsewhere"})
    key = f"console-camp-{tag}"
    created = await http.post(
        "/campaigns", json={"key": key, "name": "Autumn <fair>", "fixed_cost": 500}
    )
    assert created.status_code == 201, created.text
    action = await http.post(
        f"/campaigns/{key}/actions",
        json={
            "key": "invite",
            "selection": sel,
            "record_type": "outgoing_mail",
            "subject": "Invitation",
            "cost_per_contact": 0.85,
            "message": invitation(tag),
        },
    )
    assert action.status_code == 201, action.text
    base = f"/console/campaigns/{key}"

    page = await browser.get(base)
    assert page.status_code == 200, page.text
    text = said(page)
    assert "Autumn &lt;fair&gt;" in page.text and "<fair>" not in page.text
    invite = row(page.text, "data-action", "invite")
    assert sel in invite and "not generated" in invite and "Invitation" in invite
    assert f"4 in selection {sel} now" in re.sub(r"<[^>]+>", "", text)
    assert linked(page.text) == dict.fromkeys(members, True)
    assert page.text.count(">Unlink</button>") == 4
    assert "M2" in row(page.text, "data-contact", members[2])  # who, by name
    assert 'data-cost="total">500.00<' in page.text

    # Unlink one with its button: the page and the API agree it is left out.
    token = csrf_of(page.text)
    unlink = f"{base}/actions/invite/contacts/{members[0]}/unlink"
    done = await browser.post(unlink, data={"csrf": token})
    assert done.status_code == 303, done.text
    after = await browser.get(done.headers["location"])
    assert f"Contact {members[0]} is left out of action invite." in said(after)
    assert linked(after.text) == {**dict.fromkeys(members, True), members[0]: False}
    assert "3</b> linked, <b>1</b> unlinked" in after.text
    left_out = row(after.text, "data-contact", members[0])
    assert ">Link</button>" in left_out and ">Unlink</button>" not in left_out
    listed = (await http.get(f"/campaigns/{key}/actions/invite/contacts")).json()
    assert listed["unlinked"] == 1
    assert {c["contact_id"]: c["linked"] for c in listed["contacts"]}[members[0]] is False

    # Linking back is the API's: only members of the selection, refused in words.
    outside = await browser.post(
        f"{base}/actions/invite/contacts/{outsider}/link", data={"csrf": token}
    )
    assert outside.status_code == 404
    assert f"contact {outsider} is not in selection '{sel}'" in said(outside)
    assert 'class="flash error"' in outside.text

    # Who may press: without the form's token, or with a key that only reads, nobody.
    forged = await browser.post(unlink.replace(members[0], members[1]))
    assert forged.status_code == 403 and "stale or from another site" in said(forged)
    seen = await viewer.get(base)
    assert seen.status_code == 200 and linked(seen.text) == linked(after.text)
    assert "Unlink</button>" not in seen.text and 'id="book-cost"' not in seen.text
    refused = await viewer.post(unlink.replace(members[0], members[1]), data={"csrf": token})
    assert refused.status_code == 403 and "lacks the 'write' scope" in said(refused)
    assert (await http.get(f"/campaigns/{key}/actions/invite/contacts")).json()["unlinked"] == 1

    # Book a cost with the form (escaped where shown); a bad amount is refused.
    bad = await browser.post(
        f"{base}/costs", data={"csrf": token, "description": "Printing", "amount": "lots"}
    )
    assert bad.status_code == 422 and "The cost is not booked" in said(bad)
    assert 'value="lots"' in bad.text, "the form keeps what was typed"
    booked = await browser.post(
        f"{base}/costs",
        data={"csrf": token, "description": "Printing <b>flyers</b>", "amount": "120.50"},
    )
    assert booked.status_code == 303, booked.text
    costs = await browser.get(booked.headers["location"])
    assert "The cost is booked." in said(costs)
    assert "Printing &lt;b&gt;flyers&lt;/b&gt;" in costs.text and "<b>flyers</b>" not in costs.text
    assert 'data-cost="actual">120.50<' in costs.text
    assert 'id="total-cost">620.50<' in costs.text
    view = (await http.get(f"/campaigns/{key}")).json()
    assert (view["actual_cost"], view["total_cost"]) == (120.5, 620.5)

    # Generated (through the API): the results, the contacts reached, the variable cost;
    # its contacts are fixed, so no more buttons, and a forged unlink is refused.
    started = await http.post(f"/campaigns/{key}/actions/invite/generate")
    assert started.status_code == 202, started.text
    op = await wait_for_operation(http, started.json()["operation_id"])
    assert op["status"] == "completed", op

    async def results() -> dict[str, Any]:
        return dict((await http.get(f"/campaigns/{key}")).json()["actions"][0]["results"])

    await eventually(results, lambda r: r.get("sent") == 3)
    generated = await browser.get(base)
    invite = row(generated.text, "data-action", "invite")
    assert re.search(r"<td data-state>generated<", invite), invite
    assert cell(invite, "data-count", "reached") == "3"
    assert cell(invite, "data-count", "variable") == "2.55"
    assert re.search(r'data-result="sent">sent <b>3</b>', invite), invite
    assert 'data-cost="total">623.05<' in generated.text  # 500 + 3 * 0.85 + 120.50
    assert "its contacts are fixed" in generated.text
    assert "Unlink</button>" not in generated.text and ">Link</button>" not in generated.text
    late = await browser.post(
        f"{base}/actions/invite/contacts/{members[1]}/unlink", data={"csrf": token}
    )
    assert late.status_code == 409 and "action 'invite' was generated" in said(late)

    # The list: the campaign with its counts.
    listing = await browser.get("/console/campaigns")
    assert listing.status_code == 200
    line = row(listing.text, "data-campaign", key)
    assert cell(line, "data-count", "actions") == "1"
    assert cell(line, "data-count", "generated") == "1"
    assert cell(line, "data-count", "reached") == "3"
    assert "623.05 EUR" in line and ">generated<" in line

    missing = await browser.get(f"/console/campaigns/no-such-{tag}")
    assert missing.status_code == 404 and "does not exist" in said(missing)


async def test_a_recurring_send_live_and_stop(
    stack: Stack, browser: httpx.AsyncClient, viewer: httpx.AsyncClient
) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key = sel = f"console-rec-{tag}"
    address = f"rec-{tag}@example.com"
    query = {"all": [{"field": "email", "op": "eq", "value": address}, exclusion(key)]}
    await selection(http, sel, query)
    await create_contact(http, email=address)
    body = recurring_send(
        key,
        sel,
        name="Weekly <news>",
        message={"subject": f"News {tag}", "html": "<p>News</p>"},
        status="draft",
        frequency="weekly",
        weekdays=["mon", "thu"],
        times=["09:00", "15:30"],
        time_zone=daytime_zone(),
    )
    created = await http.post("/recurring-sends", json=body)
    assert created.status_code == 201, created.text
    schedule = stack.temporal.get_schedule_handle(f"recurring/{key}")
    base = f"/console/recurring-sends/{key}"

    page = await browser.get(base)
    assert page.status_code == 200, page.text
    text = said(page)
    assert 'id="status">draft<' in page.text and "Weekly &lt;news&gt;" in page.text
    schedule_shown = re.search(r'<dl class="fields" id="schedule">.*?</dl>', text, re.S)
    assert schedule_shown
    for shown in ("weekly", "mon, thu", "09:00, 15:30", body["time_zone"], "2026-01-01", sel):
        assert shown in schedule_shown.group(0), shown
    assert 'id="next-runs">None: it is not live.' in page.text
    assert ">Live</button>" in page.text and ">Stop</button>" in page.text

    # Live: the API's PATCH, so the schedule runs at once.
    token = csrf_of(page.text)
    live = await browser.post(f"{base}/status", data={"csrf": token, "status": "live"})
    assert live.status_code == 303, live.text
    assert live.headers["location"] == f"{base}?done=live"
    assert (await http.get(f"/recurring-sends/{key}")).json()["status"] == "live"
    assert not (await schedule.describe()).schedule.state.paused
    page = await browser.get(live.headers["location"])
    assert "Live: the schedule runs it" in said(page)
    assert 'id="status">live<' in page.text
    assert ">Live</button>" not in page.text and ">Stop</button>" in page.text
    upcoming = (await http.get(f"/recurring-sends/{key}")).json()["next_runs"]
    assert upcoming and page.text.count("<li>") >= len(upcoming)
    assert re.search(r'<ol id="next-runs">\s*<li>(Mon|Thu) ', page.text), "next runs, local"

    # A run: its counts on the page, as the API gives them.
    run = await run_now(stack, key, 0)
    assert run["status"] == "completed" and run["counts"]["sent"] == 1, run
    page = await browser.get(base)
    ran = row(page.text, "data-run", run["id"])
    for name in ("found", "deduplicated", "excluded", "sent", "skipped", "failed"):
        assert cell(ran, "data-count", name) == str(run["counts"].get(name, 0)), name
    assert cell(ran, "data-count", "sent") == "1" and cell(ran, "data-count", "found") == "1"

    # The list: status and the next run.
    listing = await browser.get("/console/recurring-sends")
    line = row(listing.text, "data-send", key)
    assert 'data-status="live"' in line and "09:00, 15:30" in line and "weekly" in line
    assert re.search(r"data-next>(Mon|Thu) \d{4}-", line), line

    # Stop: paused, every setting kept; Live is offered again.
    stop = await browser.post(f"{base}/status", data={"csrf": token, "status": "stopped"})
    assert stop.status_code == 303 and stop.headers["location"] == f"{base}?done=stopped"
    stopped = (await http.get(f"/recurring-sends/{key}")).json()
    assert stopped["status"] == "stopped" and stopped["next_runs"] == []
    assert (stopped["weekdays"], stopped["times"]) == (["mon", "thu"], ["09:00", "15:30"])
    described = await schedule.describe()
    assert described.schedule.state.paused
    assert [(c.hour[0].start, c.minute[0].start) for c in described.schedule.spec.calendars] == [
        (9, 0),
        (15, 30),
    ]
    page = await browser.get(stop.headers["location"])
    assert "Stopped: the schedule is paused" in said(page)
    assert ">Live</button>" in page.text and ">Stop</button>" not in page.text

    # Who may press: a key that only reads sees no buttons and is refused; a form
    # without its token is refused.
    seen = await viewer.get(base)
    assert seen.status_code == 200 and 'id="status">stopped<' in seen.text
    assert ">Live</button>" not in seen.text and f'action="{base}/status"' not in seen.text
    refused = await viewer.post(f"{base}/status", data={"csrf": token, "status": "live"})
    assert refused.status_code == 403 and "lacks the 'write' scope" in said(refused)
    forged = await browser.post(f"{base}/status", data={"status": "live"})
    assert forged.status_code == 403 and "stale or from another site" in said(forged)
    assert (await http.get(f"/recurring-sends/{key}")).json()["status"] == "stopped"

    # Going live with a problem: refused as the API refuses it, in its words.
    await stack.pool.execute(
        "UPDATE selections SET query = $2::jsonb WHERE key = $1",
        sel,
        {"field": "email", "op": "eq", "value": address},
    )
    api_says = await http.patch(f"/recurring-sends/{key}", json={"status": "live"})
    assert api_says.status_code == 422, api_says.text
    problem = api_says.json()["detail"][0]["msg"]
    refusal = await browser.post(f"{base}/status", data={"csrf": token, "status": "live"})
    assert refusal.status_code == 422
    assert f"Not live: {problem}" in said(refusal) and 'class="flash error"' in refusal.text
    assert "must exclude who received this send" in problem
    assert 'id="status">stopped<' in refusal.text
    assert (await schedule.describe()).schedule.state.paused

    missing = await browser.get(f"/console/recurring-sends/no-such-{tag}")
    assert missing.status_code == 404 and "does not exist" in said(missing)
