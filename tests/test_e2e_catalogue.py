"""The step catalogue on the real stack: PostgreSQL, Temporal dev server, SMTP, HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

from tests.builders import journey, linear_journey, mail, wait
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    delivered_event,
    enrol,
    publish,
    read_mail,
    wait_for_participant,
    wait_for_step,
    wait_until_done,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_split_and_waits_until_instants_and_local_times(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-split")
    await publish(
        http,
        journey(
            key,
            steps={
                "past": {"type": "wait", "until": "2020-01-01T00:00:00Z", "next": "ab"},
                "ab": {
                    "type": "split",
                    "branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}],
                },
                "a": {**mail("Variant A"), "next": "end"},
                "b": {**mail("Variant B"), "next": "end"},
                "end": {"type": "end"},
            },
        ),
    )
    emails = [f"{unique('split')}@example.com" for _ in range(8)]
    contacts = [await create_contact(http, email=e) for e in emails]
    await enrol(http, key, *contacts)
    branches = set()
    for contact, email in zip(contacts, emails, strict=True):
        view = await wait_until_done(http, key, contact)
        assert view["history"][0]["outcome"] == "the moment had passed"
        branch = view["history"][2]["step"]
        branches.add(branch)
        await read_mail(http, email, f"Variant {branch.upper()}")
    assert branches == {"a", "b"}


async def test_a_weekday_wait_computes_the_local_moment(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-weekday")
    await publish(
        http, linear_journey(key, "Weekday", ("morning", {"type": "wait", "at": "09:00"}))
    )
    contact = await create_contact(http, time_zone="Pacific/Auckland")
    await enrol(http, key, contact)
    view = await wait_for_step(http, key, contact, "morning")
    # The run sleeps until 09:00 in Auckland: 20:00 or 21:00 UTC, depending on DST.
    (fires,) = await timers_of(stack, view["workflow_id"])
    assert f"{fires:%H:%M}" in ("20:00", "21:00"), fires
    assert timedelta(0) < fires - datetime.now(UTC) <= timedelta(days=1)


async def timers_of(stack: Stack, workflow_id: str) -> list[datetime]:
    """When each timer the run has started fires (UTC), once it has started one."""
    handle = stack.temporal.get_workflow_handle(workflow_id)
    timers: list[datetime] = []
    for _ in range(50):
        async for event in handle.fetch_history_events():
            if event.HasField("timer_started_event_attributes"):
                delay = event.timer_started_event_attributes.start_to_fire_timeout
                timers.append(event.event_time.ToDatetime(UTC) + delay.ToTimedelta())
        if timers:
            break
        await asyncio.sleep(0.1)
    return timers


async def test_quiet_hours_hold_a_mail_until_the_contacts_morning(stack: Stack) -> None:
    """Quiet hours around the present hour in UTC: a contact in UTC is in them (the mail
    waits for their end), one in UTC+12 is not (the mail goes out now), and a step
    with `transactional` sends to the first at once as well."""
    http = stack.http
    now = datetime.now(UTC)
    # Still quiet if the hour turns before the run asks; they end at this hour + 2.
    quiet = {"start": f"{(now.hour - 1) % 24:02d}:00", "end": f"{(now.hour + 2) % 24:02d}:00"}
    ends = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    key = unique("e2e-quiet")
    await publish(
        http,
        {
            **linear_journey(
                key,
                "Quiet",
                ("urgent", {**mail("Your code"), "transactional": True}),
                ("offer", mail("Our offer")),
            ),
            "quiet_hours": quiet,
        },
    )
    asleep, awake = f"{unique('asleep')}@example.com", f"{unique('awake')}@example.com"
    held = await create_contact(http, email=asleep, time_zone="UTC")
    sent = await create_contact(http, email=awake, time_zone="Etc/GMT-12")
    await enrol(http, key, held, sent)

    await read_mail(http, asleep, "Your code")
    view = await wait_for_step(http, key, held, "offer")
    (fires,) = await timers_of(stack, view["workflow_id"])
    assert ends - timedelta(seconds=2) <= fires <= ends + timedelta(seconds=2), (fires, ends)
    assert "Quiet hours" in view["details"] and f"{ends:%H:%M} UTC" in view["details"]
    assert len((await http.get("/dev/mail", params={"to": asleep})).json()) == 1  # not the offer

    await read_mail(http, awake, "Your code")
    await read_mail(http, awake, "Our offer")
    assert (await wait_until_done(http, key, sent))["status"] == "completed"
    assert (await http.delete(f"/journeys/{key}/participants/{held}")).status_code == 200


async def test_event_entry_reentry_once_and_refusal(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-order")
    await publish(
        http,
        {
            **linear_journey(key, "Thanks for ordering", ("thanks", mail("Thanks!"))),
            "entry": {"type": "event", "name": f"{key}_placed"},
            "reentry": {"policy": "once"},
        },
    )
    email = f"{unique('order')}@example.com"
    contact = await create_contact(http, email=email)
    posted = await http.post("/events", json={"contact_id": contact, "name": f"{key}_placed"})
    assert posted.status_code == 202, posted.text
    delivery = await delivered_event(http, posted.json()["id"])
    assert delivery["entries"] == [{"journey_key": key, "status": "enrolled", "reason": None}]
    await read_mail(http, email, "Thanks!")
    await wait_until_done(http, key, contact)
    again = await http.post("/events", json={"contact_id": contact, "name": f"{key}_placed"})
    (entry,) = (await delivered_event(http, again.json()["id"]))["entries"]
    assert entry["status"] == "refused" and "entered once" in entry["reason"]
    through_api = (await enrol(http, key, contact))["enrolments"][0]
    assert through_api["status"] == "refused" and through_api["workflow_id"] is None


async def test_reentry_after_a_period(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-after")
    await publish(
        http,
        {
            **linear_journey(key, "Monthly", ("hi", mail("Hi"))),
            "reentry": {"policy": "after", "after": "P30D"},
        },
    )
    contact = await create_contact(http, email=f"{unique('after')}@example.com")
    await enrol(http, key, contact)
    await wait_until_done(http, key, contact)
    refused = (await enrol(http, key, contact))["enrolments"][0]
    assert refused["status"] == "refused" and "may enter again from" in refused["reason"]


async def test_removing_a_participant_and_exit_if_on_an_event(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-leave")
    await publish(
        http,
        {
            **linear_journey(key, "Leaves", ("pause", wait("P7D")), ("late", mail("Too late"))),
            "exit_if": {"field": "plan", "op": "eq", "value": "cancelled"},
        },
    )
    removed, exiting = (
        await create_contact(http),
        await create_contact(http, fields={"plan": "pro"}),
    )
    await enrol(http, key, removed, exiting)
    await wait_for_step(http, key, removed, "pause")
    deleted = await http.delete(f"/journeys/{key}/participants/{removed}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "removed"
    view = await wait_until_done(http, key, removed)
    assert (view["status"], view["reason"]) == ("removed", "removed through the API")
    again = await http.delete(f"/journeys/{key}/participants/{removed}")
    assert again.json()["status"] == "already_left"

    await wait_for_step(http, key, exiting, "pause")
    await stack.pool.execute(
        """UPDATE contacts SET fields = fields || '{"plan": "cancelled"}' WHERE id = $1""",
        uuid.UUID(exiting),
    )
    # Any event for the contact makes a waiting run look at exit_if again.
    await http.post("/events", json={"contact_id": exiting, "name": "cancelled_subscription"})
    view = await wait_until_done(http, key, exiting)
    assert (view["status"], view["reason"]) == ("exited", "exit_if held during `pause`")
    assert [h["step"] for h in view["history"]] == ["pause"]
    dossier = (await http.get(f"/contacts/{exiting}/dossier")).json()["entries"]
    assert dossier[0]["kind"] == "journey_exited" and dossier[0]["journey"] == key
    removal = (await http.get(f"/contacts/{removed}/dossier")).json()["entries"]
    assert [e["kind"] for e in removal][:2] == ["journey_removed", "journey_entered"]


async def test_profile_operations_are_atomic_and_applied_once(stack: Stack) -> None:
    from journeys.store.updates import apply_update

    http = stack.http
    contact = uuid.UUID(await create_contact(http, fields={"score": 1, "tags": ["new"]}))

    async def bump(i: int, key: str | None = None) -> str:
        return await apply_update(
            stack.pool,
            contact,
            {},
            [{"field": "score", "op": "increment", "value": 5}],
            idempotency_key=key or f"bump-{contact}-{i}",
            title="score +5",
            journey_key="test",
            step="bump",
            default_time_zone="UTC",
        )

    assert set(await asyncio.gather(*(bump(i) for i in range(20)))) == {"applied"}
    assert await bump(0) == "applied_before"  # a retry of an applied change
    row = await stack.pool.fetchrow("SELECT fields FROM contacts WHERE id = $1", contact)
    assert row is not None and row["fields"]["score"] == 101

    key = unique("e2e-ops")
    await publish(
        http,
        linear_journey(
            key,
            "Ops",
            (
                "ops",
                {
                    "type": "update_contact",
                    "set": {"first_name": "Ann"},
                    "ops": [
                        {"field": "score", "op": "decrement", "value": 1},
                        {"field": "tags", "op": "append", "value": "vip"},
                        {"field": "visits", "op": "increment", "value": 1},
                        {"field": "last_seen", "op": "set_now"},
                        {"field": "plan", "op": "clear"},
                    ],
                },
            ),
            (
                "again",
                {
                    "type": "update_contact",
                    "ops": [
                        {"field": "tags", "op": "append", "value": "vip"},
                        {"field": "tags_removed", "op": "remove", "value": "x"},
                    ],
                },
            ),
        ),
    )
    await stack.pool.execute(
        """UPDATE contacts SET fields = fields || '{"plan": "pro"}' WHERE id = $1""", contact
    )
    await enrol(http, key, str(contact))
    await wait_until_done(http, key, str(contact))
    row = await stack.pool.fetchrow(
        "SELECT first_name, fields FROM contacts WHERE id = $1", contact
    )
    assert row is not None and row["first_name"] == "Ann"
    fields = row["fields"]
    assert fields["score"] == 100 and fields["visits"] == 1
    assert fields["tags"] == ["new", "vip"]  # appending a present value adds nothing
    assert fields["tags_removed"] == [] and "plan" not in fields
    seen = datetime.fromisoformat(fields["last_seen"])
    assert abs(seen - datetime.now(UTC)) < timedelta(minutes=1)
    titles = await stack.pool.fetch(
        "SELECT title FROM contact_journal WHERE contact_id = $1 AND journey_key = $2 ORDER BY id",
        contact,
        key,
    )
    assert [t["title"] for t in titles][1:] == [
        "Profile updated: first_name = Ann, score -1, tags + vip, visits +1, last_seen = now, plan cleared",
        "Profile updated: tags + vip, tags_removed - x",
    ]


async def _receiver(answers: list[int]) -> tuple[Any, list[tuple[dict[str, str], bytes]]]:
    """A local HTTP endpoint for run_script: answers the given statuses in turn (then 200)."""
    calls: list[tuple[dict[str, str], bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")[1:]
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        calls.append((headers, body))
        status = answers.pop(0) if answers else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, calls


async def test_crm_records_notifications_scripts_and_memberships(stack: Stack) -> None:
    from activities.scripts import signature, signing_key

    http = stack.http
    sam, kim = unique("sam"), unique("kim")
    for user, zone in ((sam, "Europe/Amsterdam"), (kim, "America/New_York")):
        await http.post(
            "/users",
            json={
                "key": user,
                "name": user.title(),
                "email": f"{user}@example.com",
                "time_zone": zone,
            },
        )
    category = unique("billing")
    await http.post("/request-rules", json={"category": category, "members": [sam, kim]})
    vip, seminar = unique("vip"), unique("seminar")
    await http.post("/selections", json={"key": vip, "name": "VIPs", "type": "static"})
    await http.post("/projects", json={"key": seminar, "name": "Seminar"})
    server, calls = await _receiver([503])
    port = server.sockets[0].getsockname()[1]
    key = unique("e2e-crm")
    definition = linear_journey(
        key,
        "CRM",
        ("vip", {"type": "add_to_selection", "selection": vip}),
        ("seminar", {"type": "add_to_project", "project": seminar}),
        (
            "call",
            {
                "type": "create_activity",
                "title": "Call {{ contact.first_name }}",
                "activity_type": "call",
                "first_free_slot": {"duration": "PT30M"},
                "owner": {"kind": "contact_owner"},
            },
        ),
        (
            "ticket",
            {
                "type": "create_request",
                "title": "Invoice question",
                "category": category,
                "priority": "high",
                "message": "{{ contact.first_name }} asked about the invoice",
                "owner": {"kind": "auto"},
            },
        ),
        (
            "deal",
            {
                "type": "create_sale",
                "title": "Upgrade",
                "amount": 1200,
                "currency": "EUR",
                "owner": {"kind": "user", "user": kim},
            },
        ),
        ("hook", {"type": "run_script", "url": f"http://127.0.0.1:{port}/hooks/x"}),
        (
            "tell",
            {
                "type": "notify",
                "to": sam,
                "subject": "{{ contact.first_name }} is a VIP now",
                "body": "Please call {{ contact.first_name }} <soon>.",
            },
        ),
        ("branchy", {"type": "remove_from_selection", "selection": vip}),
    )
    # A branch on membership: still in the project, no longer in the selection.
    definition["steps"]["branchy"]["next"] = "check"
    definition["steps"]["check"] = {
        "type": "branch",
        "if": {"all": [{"project": seminar}, {"not": {"selection": vip}}]},
        "then": "end",
        "else": "end",
    }
    await publish(http, definition)
    emails = []
    contacts = []
    for i in range(2):
        email = f"{unique('crm')}@example.com"
        emails.append(email)
        contacts.append(await create_contact(http, email=email, first_name=f"Ann{i}", owner=sam))
    async with server:
        await enrol(http, key, *contacts)
        views = [await wait_until_done(http, key, c) for c in contacts]
        for _ in range(100):
            if len(calls) >= 3:  # the first call got a 503 and was retried
                break
            await asyncio.sleep(0.1)
    for view in views:
        outcomes = {h["step"]: h["outcome"] for h in view["history"]}
        assert outcomes["vip"] == "added" and outcomes["branchy"] == "removed"
        assert outcomes["check"] == "then"
        assert outcomes["hook"] == "script call started"
    owners = [{h["step"]: h["outcome"] for h in v["history"]}["ticket"] for v in views]
    assert sorted(o.split(" ")[2] for o in owners) == sorted([sam, kim])  # round robin

    records = await stack.pool.fetch(
        """SELECT kind, title, owner, assigned_by, due_at, ends_at, details, contact_id
           FROM crm_records WHERE contact_id = ANY($1::uuid[]) ORDER BY created_at""",
        [uuid.UUID(c) for c in contacts],
    )
    calls_booked = [r for r in records if r["kind"] == "activity"]
    assert sorted(r["title"] for r in calls_booked) == ["Call Ann0", "Call Ann1"]
    # Both booked in Sam's agenda, one after the other, 30 minutes each, on a weekday.
    first, second = sorted(calls_booked, key=lambda r: r["due_at"])
    assert first["owner"] == second["owner"] == sam
    assert first["ends_at"] - first["due_at"] == timedelta(minutes=30)
    assert second["due_at"] >= first["ends_at"]
    assert first["due_at"].weekday() < 5
    sale = next(r for r in records if r["kind"] == "sale")
    assert sale["owner"] == kim and sale["details"] == {"amount": 1200, "currency": "EUR"}
    request = next(r for r in records if r["kind"] == "request")
    assert request["details"]["message"].endswith("asked about the invoice")
    assert request["assigned_by"] == f"round robin of category '{category}'"

    # The notification: plain, no tracking, no unsubscribe, contact variables escaped in HTML.
    notes = await stack.wait_for_mail(f"{sam}@example.com", count=2)
    assert {n["subject"] for n in notes} == {"Ann0 is a VIP now", "Ann1 is a VIP now"}
    raw = (stack.mail_dir / f"{notes[0]['id']}.eml").read_bytes()
    note = message_from_bytes(raw, policy=policy.default)
    assert note["List-Unsubscribe"] is None and b"/t/" not in raw
    html_part = note.get_body(("html",))
    assert html_part is not None and "&lt;soon&gt;" in html_part.get_content()

    # The script got the contact and journey, signed; a 503 was retried.
    headers, body = calls[-1]
    key_bytes = signing_key(stack.settings.secret.get_secret_value())
    assert headers["x-journeys-signature"] == signature(
        key_bytes, headers["x-journeys-timestamp"], body
    )
    payload = json.loads(body)
    assert payload["journey"]["key"] == key and payload["contact"]["first_name"].startswith("Ann")
    assert len({h["idempotency-key"] for h, _ in calls}) == 2  # one per participant

    dossier = (await http.get(f"/contacts/{contacts[0]}/dossier")).json()["entries"]
    kinds = [e["kind"] for e in dossier]
    for kind in (
        "activity",
        "request",
        "sale",
        "script",
        "selection_added",
        "selection_removed",
        "project_added",
        "journey_entered",
        "message",
    ):
        assert kind in kinds, (kind, kinds)
    script = next(e for e in dossier if e["kind"] == "script")
    assert script["status"] in ("succeeded", "pending")


async def test_publish_refuses_unknown_references_and_misfitting_operations(stack: Stack) -> None:
    http = stack.http
    number = f"n_{uuid.uuid4().hex[:6]}"
    await http.post("/contact-fields", json={"name": number, "type": "number"})
    big = []
    for _ in range(2):
        uploaded = await http.post(
            "/files",
            files={"file": ("part.bin", b"x" * (13 * 1024 * 1024), "application/octet-stream")},
        )
        big.append(uploaded.json()["id"])
    key = unique("e2e-refused")
    response = await http.post(
        "/journeys",
        json=linear_journey(
            key,
            "Refused",
            ("sel", {"type": "add_to_selection", "selection": "no-such-selection"}),
            (
                "ops",
                {
                    "type": "update_contact",
                    "ops": [{"field": number, "op": "append", "value": "x"}],
                },
            ),
            ("set", {"type": "update_contact", "set": {number: "many"}}),
            ("who", {"type": "notify", "to": "no-such-user", "subject": "s", "body": "b"}),
            ("mail", {**mail("With files"), "attachments": big}),
            ("ab", {"type": "wait", "duration": "PT1M"}),
        ),
    )
    assert response.status_code == 422, response.text
    messages = [d["msg"] for d in response.json()["detail"]]
    assert "step 'sel': selection 'no-such-selection' does not exist" in messages
    assert f"step 'ops': 'append' does not fit number field '{number}'" in messages
    assert any(m.startswith(f"step 'set': field '{number}': expected a number") for m in messages)
    assert "step 'who': user 'no-such-user' does not exist" in messages
    assert "step 'mail': attachments total 26.0 MB; at most 25 MB" in messages
    assert (await http.get(f"/journeys/{key}")).status_code == 404

    split = await http.post(
        "/journeys",
        json=journey(
            unique("e2e-split-sum"),
            steps={
                "ab": {
                    "type": "split",
                    "branches": [{"percent": 60, "next": "end"}, {"percent": 30, "next": "end"}],
                },
                "end": {"type": "end"},
            },
        ),
    )
    assert split.status_code == 422
    assert split.json()["detail"][0]["msg"] == "step 'ab': percentages add up to 90, not 100"
    assert split.json()["detail"][0]["loc"] == ["body", "steps", "ab", "branches"]


async def test_sms_reaches_the_sink_once_with_its_segments(stack: Stack) -> None:
    http = stack.http
    key = unique("e2e-sms")
    await publish(
        http,
        linear_journey(
            key,
            "SMS",
            (
                "sms",
                {
                    "type": "send_sms",
                    "sender": "Shop",
                    "text": "Hi {{ contact.first_name }}, your order ships today. " + "€" * 70,
                    "if_no_phone": "exit",
                },
            ),
            ("after", mail("After the SMS")),
        ),
    )
    created = await http.post("/contacts", json={"phone": "06 1234 5678", "first_name": "Ann"})
    assert created.status_code == 201 and created.json()["phone"] == "+31612345678"
    with_phone = created.json()["id"]
    # Updating another field keeps the stored phone.
    external = unique("ext")
    await http.post("/contacts", json={"external_id": external, "phone": "+44 20 7946 0958"})
    kept = await http.post("/contacts", json={"external_id": external, "first_name": "Bo"})
    assert kept.json()["phone"] == "+442079460958"
    no_phone = await create_contact(http, first_name="Cy")
    await enrol(http, key, with_phone, no_phone)

    sent = await wait_until_done(http, key, with_phone)
    assert sent["status"] == "completed" and sent["history"][0]["outcome"] == "sent"
    (sms,) = stack.sms_to("+31612345678")
    assert sms["sender"] == "Shop" and sms["text"].startswith("Hi Ann, your order ships")
    # 50 GSM characters and 60 euro signs of two septets each: 170 septets, 2 parts.
    assert sms["segments"] == 2
    # The SMS's row (the mail after it is the contact's second message, skipped: no
    # address); rows come in no promised order.
    row = await stack.pool.fetchrow(
        "SELECT channel, body, segments, status FROM messages WHERE contact_id = $1"
        " AND step = 'sms'",
        uuid.UUID(with_phone),
    )
    assert row is not None and dict(row) == {
        "channel": "sms",
        "body": sms["text"],
        "segments": 2,
        "status": "sent",
    }
    listed = (await http.get("/dev/sms")).json()
    assert any(m["id"] == sms["id"] for m in listed)

    left = await wait_until_done(http, key, no_phone)
    assert (left["status"], left["reason"]) == ("exited", "no phone number for `sms`")
    assert [h["step"] for h in left["history"]] == ["sms"]

    bad = await http.post("/contacts", json={"phone": "12"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "phone"]


async def test_a_mail_with_an_attachment(stack: Stack) -> None:
    http = stack.http
    uploaded = await http.post(
        "/files", files={"file": ("Brochure é.pdf", b"%PDF-1.4 brochure", "application/pdf")}
    )
    key = unique("e2e-attach")
    await publish(
        http,
        linear_journey(
            key,
            "Attach",
            ("mail", {**mail("Your brochure"), "attachments": [uploaded.json()["id"]]}),
        ),
    )
    email = f"{unique('attach')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    (note,) = await stack.wait_for_mail(email, count=1)
    raw = (stack.mail_dir / f"{note['id']}.eml").read_bytes()
    msg = message_from_bytes(raw, policy=policy.default)
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "Brochure é.pdf"
    assert attachment.get_content() == b"%PDF-1.4 brochure"
    assert msg.get_body(("html",)) is not None  # the tracked HTML part is still there


async def test_a_field_change_starts_a_journey_and_wakes_exit_if(stack: Stack) -> None:
    http = stack.http
    key, watcher = unique("e2e-pro"), unique("e2e-watch")
    await publish(
        http,
        {
            **linear_journey(key, "Welcome to pro", ("hi", mail("Welcome to pro"))),
            "entry": {"type": "field_change", "field": "plan", "to": "pro"},
        },
    )
    await publish(
        http,
        {
            **linear_journey(watcher, "Watcher", ("pause", wait("P30D"))),
            "exit_if": {"field": "plan", "op": "eq", "value": "pro"},
        },
    )
    external = unique("pro")
    email = f"{external}@example.com"
    contact = (
        await http.post(
            "/contacts", json={"external_id": external, "email": email, "fields": {"plan": "free"}}
        )
    ).json()["id"]
    await enrol(http, watcher, contact)
    await wait_for_step(http, watcher, contact, "pause")
    queued = "SELECT count(*) FROM contact_events WHERE contact_id = $1 AND kind = 'profile_change'"
    changes = await stack.pool.fetchval(queued, uuid.UUID(contact))
    same = await http.post("/contacts", json={"external_id": external, "fields": {"plan": "free"}})
    assert same.status_code == 200, same.text
    assert await stack.pool.fetchval(queued, uuid.UUID(contact)) == changes  # no change, no entry
    changed = await http.post(
        "/contacts", json={"external_id": external, "fields": {"plan": "pro"}}
    )
    assert changed.status_code == 200, changed.text
    entered = await wait_for_participant(http, key, contact)
    assert entered["version"] == 1
    await read_mail(http, email, "Welcome to pro")
    view = await wait_until_done(http, watcher, contact)
    assert (view["status"], view["reason"]) == ("exited", "exit_if held during `pause`")


async def test_a_field_change_entry_without_to_starts_on_any_change(stack: Stack) -> None:
    """Seed 001's "the personal details changed": without `to` (or with a null one,
    which is stored the same way) any change of the field starts the journey."""
    http = stack.http
    keys = {"absent": unique("e2e-moved"), "null": unique("e2e-moved-null")}
    for how, key in keys.items():
        entry: dict[str, Any] = {"type": "field_change", "field": "city"}
        if how == "null":
            entry["to"] = None
        await publish(
            http,
            {**linear_journey(key, "Moved", ("ask", mail("Did you move?"))), "entry": entry},
        )
        read_back = await http.get(f"/journeys/{key}")
        assert read_back.status_code == 200
        assert read_back.json()["definition"]["entry"].get("to") is None
    external = unique("mover")
    email = f"{external}@example.com"
    contact = await create_contact(http, external_id=external, email=email)
    moved = await http.post("/contacts", json={"external_id": external, "fields": {"city": "Ede"}})
    assert moved.status_code == 200, moved.text
    for key in keys.values():
        assert (await wait_for_participant(http, key, contact))["version"] == 1
    # A contact that comes in with the field set has changed nothing: it does not enter.
    arrived = await create_contact(http, fields={"city": "Ede"})
    entries = "SELECT entries FROM contact_events WHERE contact_id = $1 AND kind = 'profile_change'"
    for _ in range(100):
        delivered = await stack.pool.fetch(
            entries + " AND delivered_at IS NOT NULL", uuid.UUID(arrived)
        )
        if delivered:
            break
        await asyncio.sleep(0.1)
    assert [row["entries"] for row in delivered] == [[]]
