"""Bad input gets a clear 4xx that names the problem, and nothing is stored."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import Stack
from tests.helpers import create_contact, enrol, first_format_token, publish, read_mail
from tests.test_definition import valid_definition


async def test_management_endpoints_need_the_api_key(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        missing = await anonymous.post("/contacts", json={"email": "x@example.com"})
        assert missing.status_code == 401 and "API key" in missing.json()["detail"]
        wrong = await anonymous.get(
            "/journeys/welcome", headers={"Authorization": "Bearer not-the-key"}
        )
        assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
        assert (await anonymous.get("/healthz")).json() == {
            "status": "ok",
            "postgres": "ok",
            "temporal": "ok",
        }
    count = await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE email = 'x@example.com'")
    assert count == 0


async def test_invalid_definition_names_the_step_and_stores_nothing(stack: Stack) -> None:
    bad = valid_definition("api-bad")
    bad["steps"]["wait_click"]["on_timeout"] = "nowhere"
    response = await stack.http.post("/journeys", json=bad)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "steps", "wait_click", "on_timeout"]
    assert "nowhere" in error["msg"] and "wait_click" in error["msg"]
    assert (await stack.http.get("/journeys/api-bad")).status_code == 404

    unknown_kind = valid_definition("api-bad")
    unknown_kind["steps"]["mail2"] = {"type": "send_fax", "next": "done"}
    response = await stack.http.post("/journeys", json=unknown_kind)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:3] == ["body", "steps", "mail2"]

    broken_template = valid_definition("api-bad")
    broken_template["steps"]["mail1"]["subject"] = "Hi {{ contact.first_name"
    response = await stack.http.post("/journeys", json=broken_template)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "steps", "mail1", "subject"]
    assert (await stack.http.get("/journeys/api-bad")).status_code == 404


async def test_unknown_journey_and_unknown_contact(stack: Stack) -> None:
    http = stack.http
    contact = await create_contact(http)
    response = await http.post("/journeys/no-such/enrolments", json={"contact_ids": [contact]})
    assert response.status_code == 404 and "no-such" in response.json()["detail"]

    await publish(http, valid_definition("api-enrol"))
    ghost = str(uuid.uuid4())
    response = await http.post(
        "/journeys/api-enrol/enrolments", json={"contact_ids": [contact, ghost]}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "contact_ids", 1] and ghost in error["msg"]
    # Nobody was enrolled, not even the contact that exists.
    stored = await stack.pool.fetchval(
        "SELECT count(*) FROM enrolments WHERE journey_key = 'api-enrol'"
    )
    assert stored == 0

    response = await http.post("/journeys/api-enrol/enrolments", json={"contact_ids": ["nope"]})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == [
        "body",
        "contact_ids",
    ]
    assert (await http.get(f"/contacts/{ghost}")).status_code == 404
    assert (await http.get(f"/journeys/api-enrol/participants/{contact}")).status_code == 404


async def test_bad_contacts_and_events(stack: Stack) -> None:
    http = stack.http
    response = await http.post(
        "/contacts", json={"external_id": "bad-1", "email": "not-an-address"}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "email"]
    response = await http.post("/contacts", json={"external_id": "bad-1", "time_zone": "Mars/Base"})
    assert response.status_code == 422 and "Mars/Base" in response.json()["detail"][0]["msg"]
    response = await http.post(
        "/contacts", json={"external_id": "bad-1", "fields": {"Bad Name": 1}}
    )
    assert response.status_code == 422
    assert (
        await stack.pool.fetchval("SELECT count(*) FROM contacts WHERE external_id = 'bad-1'") == 0
    )

    response = await http.post("/events", json={"contact_id": str(uuid.uuid4()), "name": "x"})
    assert response.status_code == 404


async def test_contact_upsert_by_external_id(stack: Stack) -> None:
    http = stack.http
    body = {
        "external_id": "c-1",
        "email": "ann@example.com",
        "first_name": "Ann",
        "fields": {"plan": "free"},
    }
    created = await http.post("/contacts", json=body)
    assert created.status_code == 201
    updated = await http.post("/contacts", json={"external_id": "c-1", "fields": {"score": 3}})
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["fields"] == {"plan": "free", "score": 3}
    assert updated.json()["email"] == "ann@example.com"


async def _one_mail_sent(stack: Stack, journey: str) -> str:
    """The id of a mail the journey sent to a new contact, once it is in the sink."""
    email = f"{journey}-{uuid.uuid4().hex[:6]}@example.com"
    await publish(stack.http, valid_definition(journey))
    contact = await create_contact(stack.http, email=email)
    await enrol(stack.http, journey, contact)
    await read_mail(stack.http, email, "Hi Ann")
    return str(
        await stack.pool.fetchval(
            "SELECT id::text FROM messages WHERE contact_id = $1", uuid.UUID(contact)
        )
    )


async def test_forged_or_altered_tokens_record_nothing(stack: Stack) -> None:
    from journeys.tokens import link_token

    message_id = await _one_mail_sent(stack, "api-tokens")
    before = await stack.pool.fetchval("SELECT count(*) FROM message_events")
    secret = stack.settings.secret.get_secret_value()
    genuine = link_token("c", message_id, secret, "https://example.com/")
    old = first_format_token({"m": message_id, "k": "c", "u": "https://example.com/"}, secret)
    body, mac = old.split(".")
    forged = [
        link_token("c", message_id, "another-secret", "https://evil.example/"),
        genuine[:30] + ("A" if genuine[30] != "A" else "B") + genuine[31:],  # another URL
        genuine[:-1] + ("A" if genuine[-1] != "A" else "B"),  # another tag
        genuine + "A",
        "garbage",
        link_token("o", message_id, secret),  # an open token as a click
        first_format_token({"m": message_id, "k": "c", "u": "https://evil.example/"}, "x"),
        body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac,
        body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),
    ]
    async with httpx.AsyncClient(base_url=stack.base_url) as browser:
        for token in forged:
            assert (await browser.get(f"/t/c/{token}")).status_code == 404, token
        assert (await browser.get(f"/t/o/{forged[0]}")).status_code == 404
        assert (await browser.post(f"/t/u/{forged[0]}")).status_code == 404
    assert await stack.pool.fetchval("SELECT count(*) FROM message_events") == before


async def test_links_in_mails_sent_before_the_shorter_tokens_still_work(stack: Stack) -> None:
    from journeys.tokens import link_token

    message_id = await _one_mail_sent(stack, "api-old-links")
    secret = stack.settings.secret.get_secret_value()
    old = first_format_token({"m": message_id, "k": "c", "u": "https://example.com/old"}, secret)
    new = link_token("c", message_id, secret, "https://example.com/new")
    assert len(new) < len(old) / 2 + 10
    async with httpx.AsyncClient(base_url=stack.base_url) as browser:
        for token, url in ((old, "https://example.com/old"), (new, "https://example.com/new")):
            clicked = await browser.get(f"/t/c/{token}")
            assert (clicked.status_code, clicked.headers["location"]) == (302, url)
        unsubscribe = first_format_token({"m": message_id, "k": "u"}, secret)
        assert (await browser.get(f"/t/u/{unsubscribe}")).status_code == 200
    urls = await stack.pool.fetch(
        "SELECT url FROM message_events WHERE message_id = $1::uuid AND kind = 'clicked'",
        message_id,
    )
    assert sorted(r["url"] for r in urls) == ["https://example.com/new", "https://example.com/old"]
