"""Reference data on the real stack: contact fields, users, selections, projects,
request rules, files, and the dossier that shows what was done."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from tests.builders import journey
from tests.conftest import Stack
from tests.helpers import create_contact


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_declared_fields_are_checked_on_contacts(stack: Stack) -> None:
    http = stack.http
    name = f"score_{uuid.uuid4().hex[:6]}"
    created = await http.post("/contact-fields", json={"name": name, "type": "number"})
    assert created.status_code == 201, created.text
    again = await http.post("/contact-fields", json={"name": name, "type": "number"})
    assert again.status_code == 200
    other = await http.post("/contact-fields", json={"name": name, "type": "text"})
    assert other.status_code == 409 and "declared as number" in other.json()["detail"]
    builtin = await http.post("/contact-fields", json={"name": "email", "type": "text"})
    assert builtin.status_code == 422 and "built-in" in builtin.text
    listed = (await http.get("/contact-fields")).json()
    assert {"name": name, "type": "number"} in listed

    wrong = await http.post("/contacts", json={"fields": {name: "high"}})
    assert wrong.status_code == 422
    (problem,) = wrong.json()["detail"]
    assert problem["loc"] == ["body", "fields", name] and "expected a number" in problem["msg"]
    right = await http.post("/contacts", json={"fields": {name: 7, "free": "anything"}})
    assert right.status_code == 201 and right.json()["fields"][name] == 7

    day = f"day_{uuid.uuid4().hex[:6]}"
    await http.post("/contact-fields", json={"name": day, "type": "date"})
    bad_day = await http.post("/contacts", json={"fields": {day: "31-01-2027"}})
    assert bad_day.status_code == 422 and "2027-01-31" in bad_day.text


async def test_a_journey_is_checked_against_the_declared_fields(stack: Stack) -> None:
    """At publish: an anniversary or a wait until a field needs a declared date (a
    refusal naming the step); a condition on a field nobody declared is published with
    a warning naming it (free fields need no declaration, a typing error would go
    unnoticed: a missing field reads as empty)."""
    http = stack.http
    plan, born = unique("plan").replace("-", "_"), unique("born").replace("-", "_")
    await http.post("/contact-fields", json={"name": plan, "type": "text"})
    await http.post("/contact-fields", json={"name": born, "type": "date"})

    def checked(condition: Mapping[str, object], wait: Mapping[str, object]) -> dict[str, Any]:
        return journey(
            unique("fields"),
            steps={
                "check": {"type": "branch", "if": condition, "then": "later", "else": "done"},
                "later": {"type": "wait", **wait, "next": "done"},
                "done": {"type": "end"},
            },
        )

    fine = await http.post(
        "/journeys",
        json=checked(
            {"all": [{"field": plan, "op": "eq", "value": "pro"}, {"anniversary": born}]},
            {"until_field": born, "anniversary": True},
        ),
    )
    assert fine.status_code == 201, fine.text
    assert fine.json()["warnings"] == []
    builtin = await http.post(
        "/journeys",
        json=checked({"field": "email", "op": "exists"}, {"duration": "P1D"}),
    )
    assert builtin.status_code == 201 and builtin.json()["warnings"] == []

    # A free field the journey sets itself is no typing error.
    own = checked({"field": "score_x", "op": "gt", "value": 3}, {"duration": "P1D"})
    own["steps"]["later"] = {"type": "update_contact", "set": {"score_x": 1}, "next": "done"}
    assert (await http.post("/journeys", json=own)).json()["warnings"] == []
    typo = await http.post(
        "/journeys",
        json=checked({"field": "plna", "op": "eq", "value": "pro"}, {"until_field": "bron"}),
    )
    assert typo.status_code == 201, typo.text
    assert [(w["loc"], w["msg"]) for w in typo.json()["warnings"]] == [
        (
            ["body", "steps", "check", "if"],
            "step 'check': field 'plna' is not a declared contact field (POST"
            " /contact-fields); a contact without it reads it as empty",
        ),
        (
            ["body", "steps", "later", "until_field"],
            "step 'later': field 'bron' is not a declared contact field (POST"
            " /contact-fields); a contact without it reads it as empty",
        ),
    ]

    for condition, wait, loc, words in (
        ({"anniversary": plan}, {"duration": "P1D"}, ["check", "if"], f"'{plan}' is not"),
        ({"anniversary": "bron"}, {"duration": "P1D"}, ["check", "if"], "'bron' is not"),
        (
            {"field": plan, "op": "exists"},
            {"until_field": plan},
            ["later", "until_field"],
            f"'{plan}' is a text field, not a date",
        ),
    ):
        refused = await http.post("/journeys", json=checked(condition, wait))
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["detail"]
        assert problem["loc"] == ["body", "steps", *loc] and words in problem["msg"], problem
    on_change = checked({"field": "email", "op": "exists"}, {"duration": "P1D"})
    on_change["entry"] = {"type": "field_change", "field": "stauts", "to": "gold"}
    changed = await http.post("/journeys", json=on_change)
    assert changed.status_code == 201, changed.text
    assert [w["loc"] for w in changed.json()["warnings"]] == [["body", "entry", "field"]]
    assert changed.json()["warnings"][0]["msg"].startswith("entry: field 'stauts' is not")
    # The entry's conditions too.
    on_event = checked({"field": "email", "op": "exists"}, {"duration": "P1D"})
    on_event["entry"] = {"type": "event", "name": "visit", "schedule_if": {"anniversary": plan}}
    refused = await http.post("/journeys", json=on_event)
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "entry", "schedule_if"], problem
    assert problem["msg"].startswith(f"entry: anniversary: '{plan}' is not"), problem


async def test_users_and_owners(stack: Stack) -> None:
    http = stack.http
    key = unique("sam")
    body = {
        "key": key,
        "name": "Sam Sales",
        "email": "sam@example.com",
        "time_zone": "Europe/Amsterdam",
    }
    assert (await http.post("/users", json=body)).status_code == 201
    assert (await http.post("/users", json={**body, "name": "Sam S."})).status_code == 200
    assert (await http.get(f"/users/{key}")).json()["name"] == "Sam S."
    assert (await http.get(f"/users/{unique('nobody')}")).status_code == 404
    bad = await http.post("/users", json={**body, "key": unique("x"), "time_zone": "Mars/Base"})
    assert bad.status_code == 422 and "time zone" in bad.text

    owned = await http.post("/contacts", json={"owner": key, "service_owner": key})
    assert owned.status_code == 201 and owned.json()["owner"] == key
    ghost = unique("ghost")
    refused = await http.post("/contacts", json={"owner": ghost})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "owner"]
    assert f"user '{ghost}' does not exist" in refused.text


async def test_static_selections_and_projects_page_through_their_members(stack: Stack) -> None:
    http = stack.http
    for path in ("/selections", "/projects"):
        key = unique("group")
        body = {"key": key, "name": "VIPs"} | ({"type": "static"} if path == "/selections" else {})
        assert (await http.post(path, json=body)).status_code == 201
        contacts = [uuid.uuid4() for _ in range(250)]
        await stack.pool.executemany(
            "INSERT INTO contacts (id) VALUES ($1)", [(c,) for c in contacts]
        )
        added = await http.post(
            f"{path}/{key}/members", json={"contact_ids": [str(c) for c in contacts]}
        )
        assert added.json() == {"added": 250}
        seen: list[str] = []
        cursor = None
        while True:
            page = (
                await http.get(
                    f"{path}/{key}/members",
                    params={"limit": 100} | ({"cursor": cursor} if cursor else {}),
                )
            ).json()
            assert page["count"] == 250
            seen += page["contact_ids"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(str(c) for c in contacts) and len(seen) == 250

        stranger = str(uuid.uuid4())
        refused = await http.post(
            f"{path}/{key}/members", json={"contact_ids": [str(contacts[0]), stranger]}
        )
        assert refused.status_code == 422 and stranger in refused.text
        removed = await http.delete(f"{path}/{key}/members/{contacts[0]}")
        assert removed.status_code == 204
        page = (await http.get(f"{path}/{key}/members")).json()
        assert page["count"] == 249
        bad_cursor = await http.get(f"{path}/{key}/members", params={"cursor": "nope!"})
        assert bad_cursor.status_code == 422

    query = await http.post(
        "/selections", json={"key": unique("q"), "name": "Q", "type": "query", "query": {}}
    )
    assert query.status_code == 422


async def test_files_are_stored_and_limited_to_25_mb(stack: Stack) -> None:
    http = stack.http
    uploaded = await http.post(
        "/files", files={"file": ("brochure.pdf", b"%PDF-1.4 hello", "application/pdf")}
    )
    assert uploaded.status_code == 201, uploaded.text
    meta = uploaded.json()
    assert (meta["filename"], meta["size"], meta["content_type"]) == (
        "brochure.pdf",
        14,
        "application/pdf",
    )
    assert (await http.get(f"/files/{meta['id']}")).json()["size"] == 14
    too_big = await http.post(
        "/files",
        files={"file": ("big.bin", b"x" * (25 * 1024 * 1024 + 1), "application/octet-stream")},
    )
    assert too_big.status_code == 413


async def test_the_dossier_lists_what_was_done_newest_first(stack: Stack) -> None:
    http = stack.http
    contact = await create_contact(http, email=f"{unique('dossier')}@example.com")
    key = unique("dossier")
    await http.post("/selections", json={"key": key, "name": "Dossier VIPs", "type": "static"})
    await http.post(f"/selections/{key}/members", json={"contact_ids": [contact]})
    await stack.pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, recipient, subject, status)
           VALUES ($1, $2, 'w', 'j', 1, 'mail1', $3, 'x@example.com', 'Welcome', 'sent')""",
        uuid.uuid4(),
        unique("dossier"),
        uuid.UUID(contact),
    )
    await http.delete(f"/selections/{key}/members/{contact}")
    entries = (await http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    assert [e["kind"] for e in entries] == ["selection_removed", "message", "selection_added"]
    assert entries[0]["title"] == "Removed from selection Dossier VIPs"
    assert entries[1]["subject"] == "Welcome" and entries[1]["step"] == "mail1"
    assert (await http.get(f"/contacts/{uuid.uuid4()}/dossier")).status_code == 404


async def test_the_dossier_pages_through_entries_that_share_a_moment(stack: Stack) -> None:
    """Entries written in one transaction share their time: a page that ends among them
    goes on with the rest, none skipped and none twice."""
    http = stack.http
    contact = await create_contact(http, email=f"{unique('pages')}@example.com")
    await stack.pool.execute(
        """INSERT INTO contact_journal (contact_id, kind, title, at)
           SELECT $1, 'profile_updated', 'Change ' || n, '2026-01-02T03:04:05Z'
           FROM generate_series(1, 5) AS n""",
        uuid.UUID(contact),
    )
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/contacts/{contact}/dossier", params=params)).json()
        seen += [e["title"] for e in page["entries"] if e["kind"] == "profile_updated"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"Change {n}" for n in range(1, 6)]
    bad = await http.get(f"/contacts/{contact}/dossier", params={"cursor": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_the_dossier_refuses_moments_outside_the_calendar(stack: Stack) -> None:
    contact = await create_contact(stack.http, email=f"{unique('edge')}@example.com")
    url = f"/contacts/{contact}/dossier"
    for name, value in (
        ("cursor", "message:1@0001-01-01T00:00:00+14:00"),
        ("before", "9999-12-31T23:00:00-14:00"),
    ):
        response = await stack.http.get(url, params={name: value})
        assert response.status_code == 422, (name, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", name]
    naive = await stack.http.get(url, params={"before": "2026-01-01T00:00:00"})
    assert naive.status_code == 200
