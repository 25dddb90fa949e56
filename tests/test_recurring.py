"""Recurring sends on the real stack: a live send to contact-record pairs with
`{{ record.title }}` in the mail, nobody mailed twice a day, de-duplication on and
off, the internal send, test mails only to internal testers, the refusals (quiet
hours, no exclusion of recent recipients), the status on the schedule, and the
schedule's calendar over a simulated year, as Temporal computes it."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest

from bench.faults import daytime_zone
from tests.conftest import API_KEY, Stack
from tests.helpers import create_contact, html_of, read_mail, record_history, run_cli


def exclusion(key: str) -> dict[str, Any]:
    return {"not": {"received": {"recurring": key}, "within": "P1D"}}


async def performances(http: httpx.AsyncClient, tag: str) -> dict[str, str]:
    """A record type and three performances: in a day, in three days, in five."""
    created = await http.post(
        "/record-types",
        json={"key": "performance", "fields": {"title": "text", "starts_at": "datetime"}},
    )
    assert created.status_code in (200, 201), created.text
    ids = {}
    for title, days in (("Hamlet", 1), ("Macbeth", 3), ("Lear", 5)):
        starts = (datetime.now(UTC) + timedelta(days=days)).isoformat()
        record = await http.post(
            "/records",
            json={
                "type": "performance",
                "external_id": f"{title}-{tag}",
                "fields": {"title": f"{title} {tag}", "starts_at": starts},
            },
        )
        assert record.status_code == 201, record.text
        ids[title] = record.json()["id"]
    return ids


async def link(http: httpx.AsyncClient, record_id: str, *contacts: str, role: str) -> None:
    linked = await http.post(
        f"/records/{record_id}/contacts", json={"contact_ids": list(contacts), "role": role}
    )
    assert linked.status_code == 200, linked.text


async def selection(http: httpx.AsyncClient, key: str, query: dict[str, Any], **extra: Any) -> None:
    created = await http.post(
        "/selections", json={"key": key, "name": key, "type": "query", "query": query, **extra}
    )
    assert created.status_code in (200, 201), created.text


def recurring_send(key: str, selection_key: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "name": f"Service mail {key}",
        "message": {
            "subject": "Your visit to {{ record.title }}",
            "html": "<p>Dear {{ contact.first_name }}, see you at {{ record.title }}.</p>",
        },
        "selection": selection_key,
        "frequency": "daily",
        "times": ["09:00"],
        "time_zone": daytime_zone(),
        "start_date": "2026-01-01",
        "status": "live",
        **extra,
    }


async def run_now(stack: Stack, key: str, runs_before: int) -> dict[str, Any]:
    """Trigger the send's schedule and wait for that run to end; the run."""
    await stack.temporal.get_schedule_handle(f"recurring/{key}").trigger()
    for _ in range(300):
        view = (await stack.http.get(f"/recurring-sends/{key}")).json()
        runs = view["last_runs"]
        if len(runs) > runs_before and runs[0]["status"] != "running":
            return dict(runs[0])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no run of {key} ended: {view}")


async def test_a_live_send_mails_each_pair_once_a_day(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    shows = await performances(http, tag)
    ann = await create_contact(http, email=f"ann-{tag}@example.com", first_name="Ann")
    bob = await create_contact(http, email=f"bob-{tag}@example.com", first_name="Bob")
    cas = await create_contact(http, email=f"cas-{tag}@example.com", first_name="Cas")
    await link(http, shows["Hamlet"], ann, bob, role="ticket_holder")
    await link(http, shows["Macbeth"], ann, role="ticket_holder")
    await link(http, shows["Lear"], cas, role="ticket_holder")
    await link(http, shows["Hamlet"], cas, role="usher")  # not a ticket holder
    key, sel = f"service-{tag}", f"holders-{tag}"
    await selection(
        http,
        sel,
        {
            "all": [
                {"record_field": "starts_at", "op": "within_next", "value": "P2D"},
                {"record_field": "title", "op": "contains", "value": tag},
                exclusion(key),
            ]
        },
        of="performance",
        role="ticket_holder",
    )
    created = await http.post("/recurring-sends", json=recurring_send(key, sel))
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["schedule_id"] == f"recurring/{key}" and view["next_runs"], view

    first = await run_now(stack, key, 0)
    assert first["status"] == "completed", first
    assert first["counts"]["found"] == 2 and first["counts"]["sent"] == 2, first
    for address, name in ((f"ann-{tag}@example.com", "Ann"), (f"bob-{tag}@example.com", "Bob")):
        mail = await read_mail(http, address, f"Your visit to Hamlet {tag}")
        assert f"Dear {name}, see you at Hamlet {tag}." in html_of(mail)
        assert len(await stack.wait_for_mail(address, 1)) == 1
    assert not stack.mail_to(f"cas-{tag}@example.com")

    # Run again: the selection excludes who received it today.
    second = await run_now(stack, key, 1)
    assert (second["counts"]["found"], second["counts"]["sent"]) == (0, 0), second

    # The selection may not forget the exclusion later: refused, naming the send, and
    # the selection is kept as it was.
    refused = await http.post(
        "/selections",
        json={
            "key": sel,
            "name": sel,
            "type": "query",
            "of": "performance",
            "role": "ticket_holder",
            "query": {
                "all": [
                    {"record_field": "starts_at", "op": "within_next", "value": "P2D"},
                    {"record_field": "title", "op": "contains", "value": tag},
                ]
            },
        },
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()["detail"][0]
    assert problem["loc"] == ["body", "query"]
    assert f"recurring send '{key}' uses it" in problem["msg"]
    assert "must exclude who received this send" in problem["msg"]
    kept = (await http.get(f"/selections/{sel}")).json()
    assert exclusion(key) in kept["query"]["all"], kept

    # The send path itself mails nobody twice on one local day: with the first run's
    # mails dated back past the exclusion's day, the selection finds Ann and Bob again,
    # and the run counts them excluded by the key that holds the local day.
    await stack.pool.execute(
        "UPDATE messages SET created_at = created_at - interval '2 days' WHERE recurring_key = $1",
        key,
    )
    third = await run_now(stack, key, 2)
    assert third["counts"]["found"] == 2 and third["counts"]["excluded"] == 2, third
    assert third["counts"]["sent"] == 0, third
    assert len(stack.mail_to(f"ann-{tag}@example.com")) == 1
    handle = stack.temporal.get_workflow_handle(first["workflow_id"])
    await record_history(handle, "recurring-run")


async def test_a_run_whose_selection_lost_the_exclusion_sends_nothing(stack: Stack) -> None:
    """Changed behind the API's back (straight in the database), the selection no longer
    excludes recent recipients: the run is skipped with the reason, and mails nobody."""
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, sel = f"lost-{tag}", f"lost-{tag}"
    field = await http.post("/contact-fields", json={"name": "tier", "type": "text"})
    assert field.status_code in (200, 201), field.text
    await create_contact(http, email=f"ann-{tag}@example.com", fields={"tier": tag})
    await selection(
        http, sel, {"all": [{"field": "tier", "op": "eq", "value": tag}, exclusion(key)]}
    )
    created = await http.post(
        "/recurring-sends",
        json=recurring_send(key, sel, message={"subject": "News", "html": "<p>News</p>"}),
    )
    assert created.status_code == 201, created.text
    await stack.pool.execute(
        "UPDATE selections SET query = $2::jsonb WHERE key = $1",
        sel,
        {"field": "tier", "op": "eq", "value": tag},
    )
    run = await run_now(stack, key, 0)
    assert run["status"] == "skipped", run
    assert "must exclude who received this send" in run["reason"], run
    # That broken send does not hold up changes to selections it does not use.
    await selection(http, f"other-{tag}", {"field": "tier", "op": "eq", "value": "gold"})
    await asyncio.sleep(0.5)
    assert stack.mail_to(f"ann-{tag}@example.com") == []


async def test_a_run_before_the_start_date_is_skipped_saying_so(stack: Stack) -> None:
    """A triggered run (or one caught up) on a local day before `start_date` sends
    nothing and says why; from the start date on the same send mails."""
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key = sel = f"early-{tag}"
    address = f"early-{tag}@example.com"
    await create_contact(http, email=address)
    await selection(
        http, sel, {"all": [{"field": "email", "op": "eq", "value": address}, exclusion(key)]}
    )
    body = recurring_send(key, sel, message={"subject": f"Early {tag}", "html": "<p>Hi</p>"})
    today = datetime.now(ZoneInfo(body["time_zone"])).date()
    tomorrow = today + timedelta(days=1)
    created = await http.post("/recurring-sends", json={**body, "start_date": str(tomorrow)})
    assert created.status_code == 201, created.text

    early = await run_now(stack, key, 0)
    assert early["status"] == "skipped", early
    assert early["reason"] == f"{today} is before the start date {tomorrow}", early
    assert early["counts"]["sent"] == 0, early
    await asyncio.sleep(0.5)
    assert stack.mail_to(address) == []

    moved = await http.patch(f"/recurring-sends/{key}", json={"start_date": str(today)})
    assert moved.status_code == 200, moved.text
    on_time = await run_now(stack, key, 1)
    assert on_time["status"] == "completed" and on_time["counts"]["sent"] == 1, on_time
    assert len(await stack.wait_for_mail(address, 1)) == 1


async def test_dedupe_by_address_on_and_off(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    shared = f"family-{tag}@example.com"
    for name in ("Kim", "Lou"):
        await create_contact(http, email=shared, first_name=name, fields={"rs_tag": tag})
    await create_contact(http, email=f"solo-{tag}@example.com", fields={"rs_tag": tag})
    field = await http.post("/contact-fields", json={"name": "rs_tag", "type": "text"})
    assert field.status_code in (200, 201)
    for dedupe in (True, False):
        key = sel = f"news-{'on' if dedupe else 'off'}-{tag}"
        await selection(
            http, sel, {"all": [{"field": "rs_tag", "op": "eq", "value": tag}, exclusion(key)]}
        )
        body = recurring_send(key, sel, dedupe=dedupe)
        body["message"] = {
            "subject": f"News {dedupe}",
            "html": "<p>Hi {{ contact.first_name }}</p>",
        }
        assert (await http.post("/recurring-sends", json=body)).status_code == 201
        run = await run_now(stack, key, 0)
        assert run["counts"]["found"] == 3, run
        assert run["counts"]["deduplicated"] == (1 if dedupe else 0), run
        assert run["counts"]["sent"] == (2 if dedupe else 3), run
    to_family = [m for m in stack.mail_to(shared)]
    assert sorted(m["subject"] for m in to_family) == ["News False", "News False", "News True"]


async def test_only_live_sends_and_the_status_is_kept_on_the_schedule(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, sel = f"paused-{tag}", f"paused-{tag}"
    await selection(
        http,
        sel,
        {"all": [{"field": "email", "op": "eq", "value": f"p-{tag}@example.com"}, exclusion(key)]},
    )
    await create_contact(http, email=f"p-{tag}@example.com")
    body = recurring_send(
        key,
        sel,
        status="draft",
        frequency="weekly",
        weekdays=["mon", "thu"],
        times=["09:00", "15:30"],
    )
    created = await http.post("/recurring-sends", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["next_runs"] == []
    schedule = stack.temporal.get_schedule_handle(f"recurring/{key}")
    assert (await schedule.describe()).schedule.state.paused

    skipped = await run_now(stack, key, 0)
    assert skipped["status"] == "skipped" and "draft" in skipped["reason"], skipped
    assert not stack.mail_to(f"p-{tag}@example.com")

    live = await http.patch(f"/recurring-sends/{key}", json={"status": "live"})
    assert live.status_code == 200, live.text
    described = await schedule.describe()
    assert not described.schedule.state.paused and live.json()["next_runs"]
    stopped = await http.patch(f"/recurring-sends/{key}", json={"status": "stopped"})
    assert stopped.json()["status"] == "stopped"
    assert (stopped.json()["weekdays"], stopped.json()["times"]) == (
        ["mon", "thu"],
        ["09:00", "15:30"],
    )
    assert (await schedule.describe()).schedule.state.paused
    # Live again: the same settings, resumed; a change of times is on the schedule at once.
    again = await http.patch(f"/recurring-sends/{key}", json={"status": "live", "times": ["10:15"]})
    assert again.status_code == 200, again.text
    calendars = (await schedule.describe()).schedule.spec.calendars
    assert [(c.hour[0].start, c.minute[0].start) for c in calendars] == [(10, 15)]
    assert [d.start for d in calendars[0].day_of_week] == [1, 4]
    daily = await http.patch(f"/recurring-sends/{key}", json={"frequency": "daily"})
    assert daily.status_code == 200 and daily.json()["weekdays"] is None, daily.text

    # An end date that has passed: the send reads stopped by itself, and its schedule pauses.
    yesterday = (datetime.now(ZoneInfo(body["time_zone"])) - timedelta(days=1)).date()
    ended = await http.patch(f"/recurring-sends/{key}", json={"end_date": yesterday.isoformat()})
    assert ended.json()["status"] == "stopped", ended.text
    assert (await schedule.describe()).schedule.state.paused
    listed = {s["key"]: s for s in (await http.get("/recurring-sends")).json()}
    assert listed[key]["status"] == "stopped"


async def test_bad_recurring_sends_are_refused_with_the_reason(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, sel = f"bad-{tag}", f"bad-{tag}"
    await selection(http, sel, {"field": "email", "op": "exists"})

    async def refused(body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await http.post("/recurring-sends", json=body)
        assert answer.status_code == 422, answer.text
        return list(answer.json()["detail"])

    (problem,) = await refused(recurring_send(key, sel))
    assert problem["loc"] == ["body", "selection"] and "received" in problem["msg"], problem
    (problem,) = await refused(recurring_send(key, sel, times=["23:30"]))
    assert problem["loc"] == ["body", "times"] and "quiet hours" in problem["msg"], problem
    (problem,) = await refused(recurring_send(key, sel, times=["09:00", "05:59"]))
    assert "quiet hours" in problem["msg"], problem
    (problem,) = await refused(recurring_send(key, sel, frequency="weekly"))
    assert "weekdays" in problem["msg"], problem
    (problem,) = await refused(recurring_send(key, sel, time_zone="Mars/Olympus"))
    assert problem["loc"] == ["body", "time_zone"], problem
    # A look-back shorter than a day does not do.
    await selection(
        http,
        sel,
        {
            "all": [
                {"field": "email", "op": "exists"},
                {"not": {"received": {"recurring": key}, "within": "PT1H"}},
            ]
        },
    )
    (problem,) = await refused(recurring_send(key, sel))
    assert problem["loc"] == ["body", "selection"], problem
    static = await http.post(
        "/selections", json={"key": f"st-{tag}", "name": "s", "type": "static"}
    )
    assert static.status_code == 201
    (problem,) = await refused(recurring_send(key, f"st-{tag}"))
    assert "static" in problem["msg"], problem
    assert (await http.get(f"/recurring-sends/{key}")).status_code == 404


async def test_internal_send_and_test_mails(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    shows = await performances(http, tag)
    guest = await create_contact(http, email=f"guest-{tag}@example.com")
    await link(http, shows["Hamlet"], guest, role="ticket_holder")
    await link(http, shows["Macbeth"], guest, role="ticket_holder")
    field = await http.post("/contact-fields", json={"name": "staff_tag", "type": "text"})
    assert field.status_code in (200, 201)
    for i in range(2):
        await create_contact(http, email=f"staff{i}-{tag}@example.com", fields={"staff_tag": tag})
    key = f"svc-{tag}"
    await selection(
        http,
        f"holders-{tag}",
        {
            "all": [
                {"record_field": "starts_at", "op": "within_next", "value": "P2D"},
                {"record_field": "title", "op": "contains", "value": tag},
                exclusion(key),
            ]
        },
        of="performance",
    )
    await selection(
        http,
        f"ahead-{tag}",
        {
            "all": [
                {"record_field": "starts_at", "op": "within_next", "value": "P4D"},
                {"record_field": "title", "op": "contains", "value": tag},
            ]
        },
        of="performance",
    )
    await selection(http, f"staff-{tag}", {"field": "staff_tag", "op": "eq", "value": tag})
    saved = await http.post(
        "/recurring-sends", json=recurring_send(key, f"holders-{tag}", status="testing")
    )
    assert saved.status_code == 201, saved.text
    internal = {
        "key": f"check-{tag}",
        "name": "Check the service mail",
        "frequency": "daily",
        "times": ["08:00"],
        "time_zone": daytime_zone(),
        "start_date": "2026-01-01",
        "status": "live",
        "internal": {
            "content_from": key,
            "lookahead_selection": f"ahead-{tag}",
            "recipients_selection": f"staff-{tag}",
        },
    }
    assert (await http.post("/recurring-sends", json=internal)).status_code == 201
    run = await run_now(stack, f"check-{tag}", 0)
    assert run["kind"] == "internal" and run["counts"]["sent"] == 4, run
    for contact in range(2):
        mail = await stack.wait_for_mail(f"staff{contact}-{tag}@example.com", 2)
        assert sorted(m["subject"] for m in mail) == [
            f"Your visit to Hamlet {tag}",
            f"Your visit to Macbeth {tag}",
        ]
    assert not stack.mail_to(f"guest-{tag}@example.com")  # the real send is only testing

    # A test mail goes to internal testers only, filled from the chosen record.
    tester = await create_contact(
        http, email=f"tester-{tag}@example.com", fields={"internal_tester": True}
    )
    refused = await http.post(
        f"/recurring-sends/{key}/test",
        json={"contact_ids": [tester, guest], "record_id": shows["Lear"]},
    )
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "contact_ids", 1] and guest in problem["msg"], problem
    sent = await http.post(
        f"/recurring-sends/{key}/test", json={"contact_ids": [tester], "record_id": shows["Lear"]}
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["counts"]["sent"] == 1, sent.json()
    await read_mail(http, f"tester-{tag}@example.com", f"Your visit to Lear {tag}")
    # A test mail counts as nobody's receipt of the send: the guest is still due.
    assert (await http.get(f"/selections/holders-{tag}/count")).json()["pairs"] == 1


def _utc(day: date, hour: int = 0) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(day.year, day.month, day.day, hour, tzinfo=UTC))
    return stamp


async def matching_times(stack: Stack, key: str, start: date, end: date) -> list[datetime]:
    """When the send's schedule fires between two dates, as the Temporal server computes
    it (the time-skipping test server implements no schedules)."""
    answer = await stack.temporal.workflow_service.list_schedule_matching_times(
        ListScheduleMatchingTimesRequest(
            namespace=stack.temporal.namespace,
            schedule_id=f"recurring/{key}",
            start_time=_utc(start),
            end_time=_utc(end),
        )
    )
    return [t.ToDatetime(tzinfo=UTC) for t in answer.start_time]


async def test_the_calendar_over_a_year_in_amsterdam(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    amsterdam = {"time_zone": "Europe/Amsterdam", "status": "draft", "start_date": "2027-01-01"}

    async def saved(key: str, **extra: Any) -> str:
        sel = f"cal-{key}"  # one each: a send's selection must keep excluding its recipients
        await selection(http, sel, {"all": [{"field": "email", "op": "exists"}, exclusion(key)]})
        answer = await http.post(
            "/recurring-sends", json=recurring_send(key, sel, **{**amsterdam, **extra})
        )
        assert answer.status_code == 201, answer.text
        return key

    # Monthly on the 31st: only the seven months that have one; 09:00 local is 08:00 UTC
    # in winter and 07:00 in summer (31 October 2027 is after the clocks went back).
    monthly = await saved(f"m31-{tag}", frequency="monthly", day_of_month=31)
    times = await matching_times(stack, monthly, date(2027, 1, 1), date(2028, 1, 1))
    assert [(t.month, t.day, t.hour) for t in times] == [
        (1, 31, 8),
        (3, 31, 7),
        (5, 31, 7),
        (7, 31, 7),
        (8, 31, 7),
        (10, 31, 8),
        (12, 31, 8),
    ]
    # Daily at 09:00 and 15:00 across the spring change (28 March 2027).
    daily = await saved(f"d-{tag}", times=["09:00", "15:00"])
    times = await matching_times(stack, daily, date(2027, 3, 27), date(2027, 3, 29))
    assert [(t.day, t.hour) for t in times] == [(27, 8), (27, 14), (28, 7), (28, 13)]
    # The autumn change: 31 October 2027.
    times = await matching_times(stack, daily, date(2027, 10, 30), date(2027, 11, 1))
    assert [(t.day, t.hour) for t in times] == [(30, 7), (30, 13), (31, 8), (31, 14)]
    # Weekly on Monday and Thursday, from the start date to the end date and no further.
    weekly = await saved(
        f"w-{tag}",
        frequency="weekly",
        weekdays=["mon", "thu"],
        start_date="2027-02-03",
        end_date="2027-02-15",
    )
    times = await matching_times(stack, weekly, date(2027, 1, 1), date(2027, 12, 31))
    assert [t.date() for t in times] == [
        date(2027, 2, 4),
        date(2027, 2, 8),
        date(2027, 2, 11),
        date(2027, 2, 15),
    ]
    # Stopped and live again: the calendar is the same.
    await http.patch(f"/recurring-sends/{weekly}", json={"status": "stopped"})
    await http.patch(f"/recurring-sends/{weekly}", json={"status": "live"})
    again = await matching_times(stack, weekly, date(2027, 1, 1), date(2027, 12, 31))
    assert again == times


async def test_the_cli_lists_shows_pauses_and_resumes(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key = f"cli-{tag}"
    await selection(http, key, {"all": [{"field": "email", "op": "exists"}, exclusion(key)]})
    body = recurring_send(key, key, frequency="monthly", day_of_month=31, times=["09:30"])
    assert (await http.post("/recurring-sends", json=body)).status_code == 201

    async def journeys(*args: str) -> str:
        code, out, err = await run_cli(stack.base_url, API_KEY, "recurring", *args)
        assert code == 0, err
        return out

    assert re.search(rf"{key}\s.*live\s.*monthly", await journeys("list")), "not listed"
    shown = await journeys("show", key)
    assert "monthly on day 31 at 09:30" in shown and "next runs: 20" in shown, shown
    assert "stopped" in await journeys("pause", key)
    schedule = stack.temporal.get_schedule_handle(f"recurring/{key}")
    assert (await schedule.describe()).schedule.state.paused
    assert "next runs: none" in await journeys("show", key)
    assert "live" in await journeys("resume", key)
    assert not (await schedule.describe()).schedule.state.paused
    code, _, err = await run_cli(stack.base_url, API_KEY, "recurring", "show", "no-such-send")
    assert code == 1 and "recurring send 'no-such-send' does not exist" in err, err
