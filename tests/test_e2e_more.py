"""More of the catalogue on the real stack (issue 24): waits until a date field's
anniversary and until a local time on given weekdays, waits for an open and for a
click on one link, follow-ups on an open and on a follow-up's own message,
`remove_from_project`, a step's own sender, an SMS step that skips a contact
without a phone, and a branch on a delivery error."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.builders import journey, linear_journey, mail
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    enrol,
    eventually,
    links_in,
    participant,
    pixel_in,
    publish,
    read_mail,
    wait_for_step,
    wait_until_done,
)
from tests.test_delivery_errors import report

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRICING = "https://example.com/pricing"
OTHER = "https://example.com/about"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def until(check: Any, what: str, timeout: float = 30) -> Any:
    for _ in range(int(timeout * 10)):
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def dossier(http: httpx.AsyncClient, contact: str) -> list[dict[str, Any]]:
    response = await http.get(f"/contacts/{contact}/dossier")
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


async def follow_up_lines(http: httpx.AsyncClient, contact: str) -> list[str]:
    return sorted(e["title"] for e in await dossier(http, contact) if e["kind"] == "follow_up")


def subjects_to(stack: Stack, address: str) -> list[str]:
    return sorted(m["subject"] for m in stack.mail_to(address))


async def handed_to_the_run(stack: Stack, message_id: str, kind: str, count: int = 1) -> None:
    """Wait until the dispatcher has handed `count` events of `kind` on the message to
    its run (only to order the test's next move after them)."""

    async def done() -> bool:
        found = await stack.pool.fetchval(
            "SELECT count(*) FROM message_events WHERE message_id = $1 AND kind = $2"
            " AND delivered_at IS NOT NULL",
            uuid.UUID(message_id),
            kind,
        )
        return int(found) >= count

    await until(done, f"{count} {kind} event(s) of {message_id} delivered")


async def sleeping(http: httpx.AsyncClient, key: str, contact: str) -> dict[str, Any]:
    """The participant view once the run has worked out its moment and sleeps."""
    return await eventually(
        lambda: participant(http, key, contact),
        lambda view: "Waiting at" in (view["details"] or ""),
    )


async def read(reader: httpx.AsyncClient, url: str) -> httpx.Response:
    """A mail reader fetching a tracked URL (the pixel, or a link without following it)."""
    response = await reader.get(url)
    assert response.status_code in (200, 302), response.text
    return response


# --- waits on the calendar ------------------------------------------------------------------


async def test_a_wait_until_the_anniversary_of_a_date_field(stack: Stack) -> None:
    """`until_field` + `anniversary` + `at` + `offset` in the contact's zone: a birthday
    that falls today wakes the run within seconds; one whose moment has passed this
    year waits for next year's (the details say when); an empty field moves on."""
    http = stack.http
    field = f"birthday_{uuid.uuid4().hex[:6]}"
    declared = await http.post("/contact-fields", json={"name": field, "type": "date"})
    assert declared.status_code in (200, 201), declared.text
    zone = "Asia/Kolkata"  # UTC+05:30, no DST
    tz = ZoneInfo(zone)
    # The moment: today's anniversary at `at` local, moved back by `offset` to a few
    # seconds from now (`at` is whole minutes; the offset takes seconds).
    target = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0).astimezone(tz)
    at = target.replace(second=0) + timedelta(minutes=1)
    offset = timedelta(seconds=int((at - target).total_seconds()))
    key = unique("e2e-birthday")
    await publish(
        http,
        linear_journey(
            key,
            "Birthday",
            (
                "birthday",
                {
                    "type": "wait",
                    "until_field": field,
                    "anniversary": True,
                    "at": f"{at:%H:%M}",
                    "offset": f"-PT{int(offset.total_seconds())}S",
                },
            ),
            ("wish", mail("Happy birthday")),
        ),
    )
    # Born on the day `at` falls on (a leap year, should that day be 29 February).
    born_today = date(1992, at.month, at.day)
    yesterday = at.date() - timedelta(days=1)
    if (yesterday.month, yesterday.day) == (2, 29):
        yesterday -= timedelta(days=1)
    born_yesterday = date(1992, yesterday.month, yesterday.day)
    today_email = f"{unique('bday')}@example.com"
    today = await create_contact(
        http, email=today_email, time_zone=zone, fields={field: born_today.isoformat()}
    )
    passed = await create_contact(http, time_zone=zone, fields={field: born_yesterday.isoformat()})
    empty = await create_contact(http, time_zone=zone)
    await enrol(http, key, today, passed, empty)

    woke = await wait_until_done(http, key, today, timeout=30)
    assert woke["status"] == "completed"
    assert [h["step"] for h in woke["history"]] == ["birthday", "wish", "end"]
    # It woke at the moment, not before.
    assert datetime.fromisoformat(woke["history"][1]["at"]) >= target - timedelta(seconds=1)
    await read_mail(http, today_email, "Happy birthday")

    # Yesterday's anniversary of this year is over: next year's (or, on 1 January,
    # this year's 31 December), at the same local moment.
    def moment(year: int) -> datetime:
        return datetime.combine(date(year, yesterday.month, yesterday.day), at.time(), tz) - offset

    now = datetime.now(UTC)
    expected = next(m for m in (moment(at.year), moment(at.year + 1)) if m >= now)
    await wait_for_step(http, key, passed, "birthday")
    waiting = await sleeping(http, key, passed)
    assert waiting["status"] == "running"
    assert (
        f"Waiting at `birthday` until {expected.astimezone(UTC):%Y-%m-%d %H:%M} UTC."
        in waiting["details"]
    )
    assert expected - now > timedelta(days=300)

    moved = await wait_until_done(http, key, empty)
    assert moved["history"][0]["outcome"] == f"moved on: field '{field}' is empty"
    assert (await http.delete(f"/journeys/{key}/participants/{passed}")).status_code == 200


def noon_zone(now: datetime) -> str:
    """A fixed-offset zone in which it is now between 12:00 and 13:00."""
    hours = 12 - now.hour  # -11 .. 12
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"  # Etc/GMT-5 is UTC+5


async def test_a_wait_until_a_local_time_on_given_weekdays(stack: Stack) -> None:
    """`at` 09:00 on today's weekday and the day after tomorrow's, at noon local: today's
    09:00 is over and tomorrow is not listed, so the run sleeps until 09:00 local the
    day after tomorrow."""
    http = stack.http
    now = datetime.now(UTC)
    zone = noon_zone(now)
    local_today = now.astimezone(ZoneInfo(zone)).date()
    later = local_today + timedelta(days=2)
    days = [WEEKDAYS[local_today.weekday()], WEEKDAYS[later.weekday()]]
    key = unique("e2e-weekdays")
    await publish(
        http,
        linear_journey(
            key,
            "Weekdays",
            ("morning", {"type": "wait", "at": "09:00", "weekdays": days}),
            ("hello", mail("Good morning")),
        ),
    )
    contact = await create_contact(http, time_zone=zone)
    await enrol(http, key, contact)
    await wait_for_step(http, key, contact, "morning")
    view = await sleeping(http, key, contact)
    wakes = datetime.combine(later, time(9), ZoneInfo(zone)).astimezone(UTC)
    assert view["status"] == "running"
    assert f"Waiting at `morning` until {wakes:%Y-%m-%d %H:%M} UTC." in view["details"]
    assert view["messages"] == []
    assert (await http.delete(f"/journeys/{key}/participants/{contact}")).status_code == 200


# --- waiting for what happens to a mail -----------------------------------------------------


async def test_wait_for_event_on_an_open(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-open-wait")
    await publish(
        http,
        journey(
            key,
            start="mail1",
            steps={
                "mail1": {**mail("Read me"), "next": "wait_open"},
                "wait_open": {
                    "type": "wait_for_event",
                    "event": "opened",
                    "message": "mail1",
                    "timeout": "PT5M",
                    "on_event": "thanks",
                    "on_timeout": "end",
                },
                "thanks": {**mail("Thanks for reading"), "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    email = f"{unique('open')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Read me")
    await wait_for_step(http, key, contact, "wait_open")
    async with httpx.AsyncClient() as reader:
        pixel = await read(reader, pixel_in(msg))
    assert pixel.headers["content-type"] == "image/gif"
    view = await wait_until_done(http, key, contact)
    assert view["status"] == "completed"
    assert [(h["step"], h["outcome"]) for h in view["history"]][:3] == [
        ("mail1", "sent"),
        ("wait_open", "opened"),
        ("thanks", "sent"),
    ]
    assert [e["kind"] for e in view["messages"][0]["events"]] == ["opened"]
    await read_mail(http, email, "Thanks for reading")


async def test_wait_for_event_on_one_link_ignores_another(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-link-wait")
    await publish(
        http,
        journey(
            key,
            start="mail1",
            steps={
                "mail1": {
                    **mail(
                        "Two links",
                        f'<p><a href="{OTHER}">about us</a> or <a href="{PRICING}">prices</a></p>',
                    ),
                    "next": "wait_click",
                },
                "wait_click": {
                    "type": "wait_for_event",
                    "event": "clicked",
                    "message": "mail1",
                    "link": PRICING,
                    "timeout": "PT5M",
                    "on_event": "offer",
                    "on_timeout": "end",
                },
                "offer": {**mail("Your offer"), "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    email = f"{unique('link')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Two links")
    view = await wait_for_step(http, key, contact, "wait_click")
    message_id = view["messages"][0]["id"]
    about, pricing = [u for u in links_in(msg) if "/t/c/" in u]
    async with httpx.AsyncClient() as reader:
        assert (await read(reader, about)).headers["location"] == OTHER
        await handed_to_the_run(stack, message_id, "clicked")
        # The run has been told of that click, and it did not count.
        view = await participant(http, key, contact)
        assert (view["status"], view["current_step"]) == ("running", "wait_click")
        assert subjects_to(stack, email) == ["Two links"]

        assert (await read(reader, pricing)).headers["location"] == PRICING
    view = await wait_until_done(http, key, contact)
    assert view["status"] == "completed"
    assert [(h["step"], h["outcome"]) for h in view["history"]][:3] == [
        ("mail1", "sent"),
        ("wait_click", "clicked"),
        ("offer", "sent"),
    ]
    assert [e["url"] for e in view["messages"][0]["events"]] == [OTHER, PRICING]
    await read_mail(http, email, "Your offer")


# --- follow-ups -----------------------------------------------------------------------------


def follow_up(key: str, on: str, subject: str, **extra: Any) -> dict[str, Any]:
    """A follow-up rule that sends one mail at once; `extra` goes on its mail step."""
    return {
        "key": key,
        "on": on,
        "wait": "PT0M",
        "start": "m",
        "steps": {
            "m": {**mail(subject), **extra, "next": "end"},
            "end": {"type": "end"},
        },
    }


async def test_a_follow_up_on_an_open(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-fu-open")
    await publish(
        http,
        journey(
            key,
            start="mail1",
            steps={
                "mail1": {
                    **mail("Our news"),
                    "follow_ups": [follow_up("looked", "opened", "Glad you looked")],
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    email = f"{unique('fu-open')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Our news")
    assert (await wait_until_done(http, key, contact))["status"] == "completed"
    assert subjects_to(stack, email) == ["Our news"]  # nothing until the mail is opened
    async with httpx.AsyncClient() as reader:
        for _ in range(2):  # opened twice: the rule fires once
            await read(reader, pixel_in(msg))
    await read_mail(http, email, "Glad you looked")
    view = await participant(http, key, contact)
    await handed_to_the_run(stack, view["messages"][0]["id"], "opened", count=2)
    await asyncio.sleep(1)  # a second firing would show by now
    assert subjects_to(stack, email) == ["Glad you looked", "Our news"]
    assert await follow_up_lines(http, contact) == ["Follow-up 'looked' of mail1 fired (opened)"]


async def test_a_follow_up_of_a_follow_ups_own_message(stack: Stack) -> None:
    """mail1's follow-up sends a second mail, whose own follow-up (on its open) sends a
    third; opening mail1 fires nothing."""
    http = stack.http
    key = unique("e2e-fu-chain")
    await publish(
        http,
        journey(
            key,
            start="mail1",
            steps={
                "mail1": {
                    **mail("First"),
                    "follow_ups": [
                        follow_up(
                            "second",
                            "sent",
                            "Second",
                            follow_ups=[follow_up("third", "opened", "Third")],
                        )
                    ],
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    email = f"{unique('fu-chain')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    first = await read_mail(http, email, "First")
    second = await read_mail(http, email, "Second")
    async with httpx.AsyncClient() as reader:
        await read(reader, pixel_in(first))
        view = await participant(http, key, contact)
        await handed_to_the_run(stack, view["messages"][0]["id"], "opened")
        assert subjects_to(stack, email) == ["First", "Second"]
        await read(reader, pixel_in(second))
    await read_mail(http, email, "Third")
    lines = await until(
        lambda: _at_least(follow_up_lines(http, contact), 2), "both follow-ups in the dossier"
    )
    assert lines[0] == "Follow-up 'second' of mail1 fired (sent)"
    assert "'third'" in lines[1] and lines[1].endswith("fired (opened)")
    messages = [e["subject"] for e in await dossier(http, contact) if e["kind"] == "message"]
    assert sorted(messages) == ["First", "Second", "Third"]


async def _at_least(lines: Any, count: int) -> list[str] | None:
    found: list[str] = await lines
    return found if len(found) >= count else None


# --- groups, senders, SMS -------------------------------------------------------------------


async def test_remove_from_project_after_add_to_project(stack: Stack) -> None:
    http = stack.http
    project = unique("seminar")
    created = await http.post("/projects", json={"key": project, "name": "Seminar"})
    assert created.status_code == 201, created.text
    key = unique("e2e-project")
    await publish(
        http,
        journey(
            key,
            start="join",
            steps={
                "join": {"type": "add_to_project", "project": project, "next": "pause"},
                "pause": {
                    "type": "wait_for_event",
                    "event": "custom",
                    "name": f"{key}-leave",
                    "timeout": "PT5M",
                    "on_event": "leave",
                    "on_timeout": "leave",
                },
                "leave": {"type": "remove_from_project", "project": project, "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    contact = await create_contact(http)

    async def members() -> list[str]:
        page = await http.get(f"/projects/{project}/members")
        assert page.status_code == 200, page.text
        return list(page.json()["contact_ids"])

    await enrol(http, key, contact)
    await wait_for_step(http, key, contact, "pause")
    assert await members() == [contact]
    posted = await http.post("/events", json={"contact_id": contact, "name": f"{key}-leave"})
    assert posted.status_code == 202, posted.text
    view = await wait_until_done(http, key, contact)
    assert view["status"] == "completed"
    outcomes = [(h["step"], h["outcome"]) for h in view["history"]]
    assert outcomes[0] == ("join", "added") and outcomes[2] == ("leave", "removed")
    assert await members() == []
    kinds = [e["kind"] for e in await dossier(http, contact)]
    assert kinds.index("project_removed") < kinds.index("project_added")  # newest first


async def test_a_steps_own_sender_is_the_from_header(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-sender")
    await publish(
        http,
        linear_journey(
            key,
            "Sender",
            ("own", {**mail("From the shop"), "sender": "Shop Team <shop@example.org>"}),
            ("default", mail("From the default")),
        ),
    )
    email = f"{unique('sender')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    own = await read_mail(http, email, "From the shop")
    assert own["From"].addresses[0].addr_spec == "shop@example.org"
    assert own["From"].addresses[0].display_name == "Shop Team"
    default = await read_mail(http, email, "From the default")
    assert default["From"] == stack.settings.mail_from


async def test_an_sms_step_skips_a_contact_without_a_phone(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-sms-skip")
    await publish(
        http,
        linear_journey(
            key,
            "SMS skip",
            (
                "sms",
                {"type": "send_sms", "text": "Hi {{ contact.first_name }}", "if_no_phone": "skip"},
            ),
            ("after", mail("After the SMS")),
        ),
    )
    email = f"{unique('nophone')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    view = await wait_until_done(http, key, contact)
    assert (view["status"], view["reason"]) == ("completed", None)
    assert [(h["step"], h["outcome"]) for h in view["history"]][:2] == [
        ("sms", "skipped: no phone number"),
        ("after", "sent"),
    ]
    sms, after = view["messages"]
    assert (sms["step"], sms["status"], sms["error"]) == ("sms", "skipped", "no phone number")
    assert after["status"] == "sent"
    await read_mail(http, email, "After the SMS")


# --- branches on delivery errors ------------------------------------------------------------


async def test_a_branch_on_a_delivery_error(stack: Stack) -> None:
    """After mail1, the run pauses until told to go on, then branches on a delivery
    error of mail1: a hard bounce posted by the provider's webhook and a refusal at
    send time take the `then` path; a mail that arrived takes `else`."""
    http = stack.http
    key = unique("e2e-branch-error")
    go = f"{key}-go"
    await publish(
        http,
        journey(
            key,
            start="mail1",
            steps={
                "mail1": {**mail("Hello"), "next": "pause"},
                "pause": {
                    "type": "wait_for_event",
                    "event": "custom",
                    "name": go,
                    "timeout": "PT5M",
                    "on_event": "check",
                    "on_timeout": "check",
                },
                "check": {
                    "type": "branch",
                    "if": {"message": "mail1", "event": "delivery_error"},
                    "then": "cleanup",
                    "else": "end",
                },
                "cleanup": {
                    "type": "update_contact",
                    "set": {"needs_cleanup": True},
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    emails = {
        "bounced": f"{unique('hb')}@example.com",
        "refused": f"{unique('bounce')}@example.com",  # the dev sink answers 550
        "arrived": f"{unique('ok')}@example.com",
    }
    ids = {who: await create_contact(http, email=email) for who, email in emails.items()}
    await enrol(http, key, *ids.values())
    views = {who: await wait_for_step(http, key, c, "pause") for who, c in ids.items()}
    msg = await read_mail(http, emails["bounced"], "Hello")
    await read_mail(http, emails["arrived"], "Hello")
    bounced = await report(
        http, {"message_id": msg["Message-ID"], "kind": "hard_bounce", "detail": "5.1.1"}
    )
    assert bounced.json()["status"] == "recorded", bounced.text
    for who in ("bounced", "refused"):
        await handed_to_the_run(stack, views[who]["messages"][0]["id"], "delivery_error")
    for contact in ids.values():
        posted = await http.post("/events", json={"contact_id": contact, "name": go})
        assert posted.status_code == 202, posted.text

    for who, contact in ids.items():
        view = await wait_until_done(http, key, contact)
        assert view["status"] == "completed", (who, view)
        steps = {h["step"]: h["outcome"] for h in view["history"]}
        path = "then" if who != "arrived" else "else"
        assert steps["check"] == path, (who, view["history"])
        assert ("cleanup" in steps) == (who != "arrived")
        fields = (await http.get(f"/contacts/{contact}")).json()["fields"]
        assert bool(fields.get("needs_cleanup")) == (who != "arrived")
    refused = (await participant(http, key, ids["refused"]))["messages"][0]
    assert refused["status"] == "rejected"
    assert [e["kind"] for e in refused["events"]] == ["delivery_error"]
