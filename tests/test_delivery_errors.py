"""Delivery errors and unsubscribes on the real stack: the signed webhook, the address
it suppresses, the dev sink's refusals of a recipient as hard bounces, an address the
relay cannot take failing once, and journeys that wait for them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx

from activities.twilio import parse_sms_url, request_signature
from journeys.store.delivery import SUPPRESS, SUPPRESSING, text_array
from tests.builders import journey, linear_journey, mail
from tests.conftest import WEBHOOK_SECRET, Stack
from tests.helpers import (
    create_contact,
    enrol,
    participant,
    publish,
    read_mail,
    wait_for_step,
    wait_until_done,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Journeys-Signature": f"sha256={digest}", "Content-Type": "application/json"}


async def report(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    raw = json.dumps(body).encode()
    return await http.post("/webhooks/delivery", content=raw, headers=signed(raw))


def wait_for_error(key: str, kinds: list[str] | None = None) -> dict[str, Any]:
    """mail1 -> wait for a delivery error on it (else time out) -> end."""
    waiting: dict[str, Any] = {
        "type": "wait_for_event",
        "event": "delivery_error",
        "message": "mail1",
        "timeout": "PT30M",
        "on_event": "flag",
        "on_timeout": "end",
    }
    if kinds is not None:
        waiting["kinds"] = kinds
    return journey(
        key,
        name="Bounce watcher",
        start="mail1",
        steps={
            "mail1": {**mail("Hello"), "next": "wait_error"},
            "wait_error": waiting,
            "flag": {"type": "update_contact", "set": {"needs_cleanup": True}, "next": "end"},
            "end": {"type": "end"},
        },
    )


async def counts(stack: Stack) -> tuple[int, int]:
    errors = await stack.pool.fetchval(
        "SELECT count(*) FROM message_events WHERE kind = 'delivery_error'"
    )
    orphans = await stack.pool.fetchval("SELECT count(*) FROM orphan_delivery_reports")
    return int(errors), int(orphans)


async def test_unsigned_wrongly_signed_or_malformed_reports_change_nothing(stack: Stack) -> None:
    http = stack.http
    before = await counts(stack)
    good = json.dumps({"message_id": str(uuid.uuid4()), "kind": "hard_bounce"}).encode()
    unsigned = await http.post("/webhooks/delivery", content=good)
    assert unsigned.status_code == 401 and "X-Journeys-Signature" in unsigned.json()["detail"]
    wrong = await http.post(
        "/webhooks/delivery", content=good, headers=signed(good, "another-secret")
    )
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    # Signed for another body.
    other = await http.post("/webhooks/delivery", content=good + b" ", headers=signed(good))
    assert other.status_code == 401
    not_json = b"kind=hard_bounce"
    answer = await http.post("/webhooks/delivery", content=not_json, headers=signed(not_json))
    assert answer.status_code == 422 and "not JSON" in answer.text
    bad_kind = json.dumps({"message_id": "x", "kind": "exploded"}).encode()
    answer = await http.post("/webhooks/delivery", content=bad_kind, headers=signed(bad_kind))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "kind"]
    assert await counts(stack) == before


async def test_an_unknown_message_is_an_orphan_kept_and_answered_200(stack: Stack) -> None:
    errors, orphans = await counts(stack)
    answer = await report(
        stack.http, {"message_id": "<nobody@example.org>", "kind": "soft_bounce", "detail": "?"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "orphan", "message_id": None}
    assert await counts(stack) == (errors, orphans + 1)


async def test_a_hard_bounce_suppresses_the_address_and_wakes_the_journey(stack: Stack) -> None:
    http = stack.http
    key = unique("bounce")
    await publish(http, wait_for_error(key, kinds=["hard_bounce", "complaint"]))
    email = f"{unique('hb')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Hello")
    await wait_for_step(http, key, contact, "wait_error")
    # A soft bounce is recorded, and neither suppresses nor counts for this wait.
    soft = await report(http, {"message_id": msg["Message-ID"], "kind": "soft_bounce"})
    assert soft.json()["status"] == "recorded"
    # The provider names the message by the Message-ID header the product gave it.
    hard = await report(
        http, {"message_id": msg["Message-ID"], "kind": "hard_bounce", "detail": "5.1.1"}
    )
    assert hard.status_code == 200, hard.text
    view = await wait_until_done(http, key, contact)
    assert [(h["step"], h["outcome"]) for h in view["history"]][:2] == [
        ("mail1", "sent"),
        ("wait_error", "delivery_error"),
    ]
    assert hard.json() == {"status": "recorded", "message_id": view["messages"][0]["id"]}
    stored = (await http.get(f"/contacts/{contact}")).json()
    assert stored["bounced"] is True and stored["fields"]["needs_cleanup"] is True
    # No e-mail goes to the address again, from any journey, whichever contact has it.
    again = unique("again")
    await publish(http, linear_journey(again, "Again", ("m", mail("Second try"))))
    twin = await create_contact(http, email=email.upper())
    await enrol(http, again, contact, twin)
    for who in (contact, twin):
        done = await wait_until_done(http, again, who)
        assert done["messages"][0]["status"] == "skipped"
        assert done["messages"][0]["error"] == "the address bounced or complained"
    assert [m["subject"] for m in stack.mail_to(email)] == ["Hello"]


async def test_a_recipient_refused_at_send_time_is_a_hard_bounce(stack: Stack) -> None:
    """The dev sink refuses bounce* addresses with `550 5.1.1`, as a real relay refuses an
    unknown mailbox at RCPT: a hard bounce, recorded with the relay's enhanced code and
    text; the address is suppressed through the outbox as a hard-bounce report would
    (a profile change of `bounced`), so no journey mails it again."""
    http = stack.http
    key = unique("rejected")
    await publish(http, wait_for_error(key, kinds=["hard_bounce"]))
    email = f"{unique('bounce')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    view = await wait_until_done(http, key, contact)
    reason = (
        "rejected by the mail server at RCPT: 550 5.1.1 <address>: no such mailbox "
        "(the dev sink refuses bounce*)"
    )
    assert [(h["step"], h["outcome"]) for h in view["history"]][:2] == [
        ("mail1", f"skipped: {reason}"),
        ("wait_error", "delivery_error"),
    ]
    (message,) = view["messages"]
    assert (message["status"], message["error"]) == ("rejected", reason)
    assert [e["kind"] for e in message["events"]] == ["delivery_error"]
    data = await stack.pool.fetchval(
        "SELECT data FROM message_events WHERE message_id = $1::uuid AND kind = 'delivery_error'",
        message["id"],
    )
    assert data == {"kind": "hard_bounce", "detail": reason, "source": "send"}
    stored = (await http.get(f"/contacts/{contact}")).json()
    assert stored["bounced"] is True and stored["fields"]["needs_cleanup"] is True
    # The suppression went out as a profile change, stored first and delivered by the
    # dispatcher.
    change = await stack.pool.fetchval(
        """SELECT data FROM contact_events
           WHERE contact_id = $1::uuid AND kind = 'profile_change'
             AND data -> 'fields' = '["bounced"]'::jsonb""",
        contact,
    )
    assert change is not None and change["values"] == {"bounced": True}
    # The next journey does not mail the address again.
    again = unique("again")
    await publish(http, linear_journey(again, "Again", ("m", mail("Second try"))))
    await enrol(http, again, contact)
    done = await wait_until_done(http, again, contact)
    assert done["messages"][0]["status"] == "skipped"
    assert done["messages"][0]["error"] == "the address bounced or complained"
    assert stack.mail_to(email) == []


async def test_a_non_ascii_address_fails_for_good_where_the_relay_lacks_smtputf8(
    stack: Stack,
) -> None:
    """The dev sink (aiosmtpd's defaults) does not offer SMTPUTF8: a mail to `jörg@…`
    cannot go out. The message fails once, with the reason, in the participant's view
    and the contact's dossier, instead of being retried for ever."""
    http = stack.http
    key = unique("eai")
    await publish(http, linear_journey(key, "EAI", ("mail1", mail("Hallo"))))
    contact = await create_contact(http, email=f"jörg-{uuid.uuid4().hex[:6]}@example.com")
    await enrol(http, key, contact)
    view = await wait_until_done(http, key, contact)
    reason = (
        "the mail server does not offer SMTPUTF8, which the address's non-ASCII local part needs"
    )
    assert view["status"] == "failed" and reason in view["reason"]
    (message,) = view["messages"]
    assert (message["status"], message["error"]) == ("failed", reason)
    dossier = (await http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    (entry,) = [e for e in dossier if e["kind"] == "message"]
    assert (entry["status"], entry["details"]["error"]) == ("failed", reason)
    assert any(e["kind"] == "journey_failed" and reason in e["title"] for e in dossier)


async def test_an_unsubscribe_is_readable_and_can_be_waited_for(stack: Stack) -> None:
    http = stack.http
    key = unique("unsub-wait")
    await publish(
        http,
        journey(
            key,
            name="Unsubscribe watcher",
            start="mail1",
            steps={
                "mail1": {**mail("Hello"), "next": "wait_unsub"},
                "wait_unsub": {
                    "type": "wait_for_event",
                    "event": "unsubscribed",
                    "message": "mail1",
                    "timeout": "PT30M",
                    "on_event": "end",
                    "on_timeout": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    email = f"{unique('us')}@example.com"
    contact = await create_contact(http, email=email)
    await enrol(http, key, contact)
    msg = await read_mail(http, email, "Hello")
    url = msg["List-Unsubscribe"].strip().strip("<>")
    async with httpx.AsyncClient() as mail_client:
        for _ in range(2):  # mail clients retry; the second records nothing
            done = await mail_client.post(url, data={"List-Unsubscribe": "One-Click"})
            assert done.status_code == 200
    view = await wait_until_done(http, key, contact)
    assert view["history"][1]["outcome"] == "unsubscribed"
    assert (await http.get(f"/contacts/{contact}")).json()["unsubscribed"] is True


async def test_an_sms_status_callback_is_a_delivery_error(stack: Stack) -> None:
    """The provider's signed status callback: an undelivered text fires the message's
    follow-up on delivery errors; a forged one changes nothing."""
    http = stack.http
    key = unique("sms-status")
    bad_number = {
        "key": "bad",
        "on": "delivery_error",
        "kinds": ["hard_bounce"],
        "start": "m",
        "steps": {
            "m": {"type": "update_contact", "set": {"sms_bad": True}, "next": "end"},
            "end": {"type": "end"},
        },
    }
    await publish(
        http,
        journey(
            key,
            name="Texts",
            start="text",
            steps={
                "text": {
                    "type": "send_sms",
                    "text": "Hi",
                    "follow_ups": [bad_number],
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    # A number of its own: other tests count the texts to theirs.
    contact = await create_contact(http, phone=f"+3162{uuid.uuid4().int % 10**7:07d}")
    await enrol(http, key, contact)
    view = await wait_until_done(http, key, contact)
    sid = await stack.pool.fetchval(
        "SELECT provider_id FROM messages WHERE id = $1", uuid.UUID(view["messages"][0]["id"])
    )
    assert stack.settings.sms_url is not None
    token = parse_sms_url(stack.settings.sms_url).auth_token
    url = f"{stack.settings.public_url}/webhooks/sms-status"

    async def callback(params: dict[str, str], signature: str | None = None) -> httpx.Response:
        signed = signature or request_signature(token, url, params)
        return await http.post(
            "/webhooks/sms-status", data=params, headers={"X-Twilio-Signature": signed}
        )

    failed = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert (await callback(failed, signature="forged")).status_code == 403
    assert (await callback({**failed, "MessageStatus": "delivered"})).json() == {
        "status": "ignored"
    }
    assert (await callback({**failed, "MessageSid": "SMunknown"})).json() == {"status": "orphan"}
    assert (await callback(failed)).json() == {"status": "recorded"}
    for _ in range(100):
        if (await http.get(f"/contacts/{contact}")).json()["fields"].get("sms_bad"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the follow-up on the undelivered text did not run")


async def test_an_unsubscribe_or_a_hard_bounce_ends_waiting_runs_at_once(stack: Stack) -> None:
    """Both change the profile (`unsubscribed`, `bounced`): every run of the contact
    whose exit_if asks about it leaves at once, not when its 30-day wait is over, also
    in a journey that never mailed them; a run whose exit_if asks about something else
    waits on."""
    http = stack.http
    mailing, watching = unique("exit-mailing"), unique("exit-watching")
    await publish(
        http,
        {
            **linear_journey(
                mailing,
                "Mailing",
                ("first", mail("First")),
                ("pause", {"type": "wait", "duration": "P30D"}),
                ("second", mail("Second")),
            ),
            "exit_if": {"field": "unsubscribed", "op": "eq", "value": True},
        },
    )
    await publish(
        http,
        {
            **linear_journey(watching, "Watching", ("pause", {"type": "wait", "duration": "P30D"})),
            "exit_if": {"field": "bounced", "op": "eq", "value": True},
        },
    )
    leaving, bouncing = f"{unique('leaves')}@example.com", f"{unique('hard')}@example.com"
    unsubscribes = await create_contact(http, email=leaving)
    bounces = await create_contact(http, email=bouncing)
    for contact in (unsubscribes, bounces):
        await enrol(http, mailing, contact)
        await enrol(http, watching, contact)
        await wait_for_step(http, mailing, contact, "pause")
        await wait_for_step(http, watching, contact, "pause")

    url = (await read_mail(http, leaving, "First"))["List-Unsubscribe"].strip().strip("<>")
    async with httpx.AsyncClient() as mail_client:
        done = await mail_client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
    left = await wait_until_done(http, mailing, unsubscribes, timeout=15)
    assert (left["status"], left["reason"]) == ("exited", "exit_if held during `pause`")

    msg = await read_mail(http, bouncing, "First")
    hard = await report(http, {"message_id": msg["Message-ID"], "kind": "hard_bounce"})
    assert hard.json()["status"] == "recorded"
    left = await wait_until_done(http, watching, bounces, timeout=15)
    assert (left["status"], left["reason"]) == ("exited", "exit_if held during `pause`")

    # The other two runs ask about what did not happen: they wait on.
    assert (await participant(http, watching, unsubscribes))["status"] == "running"
    assert (await participant(http, mailing, bounces))["status"] == "running"
    for key, contact in ((watching, unsubscribes), (mailing, bounces)):
        removed = await http.delete(f"/journeys/{key}/participants/{contact}")
        assert removed.status_code == 200


async def test_the_kinds_that_suppress_are_valid_sql_however_many(stack: Stack) -> None:
    """The suppressing kinds were written into the statement as a tuple's repr: one kind
    alone, `('hard_bounce',)`, would have been invalid SQL on every suppression."""
    for kinds in (("hard_bounce",), SUPPRESSING, ("it's",), ()):
        for kind in ("hard_bounce", "complaint", "it's"):
            found = await stack.pool.fetchval(f"SELECT $1::text = ANY({text_array(kinds)})", kind)
            assert found is (kind in kinds), (kinds, kind)
    assert repr(SUPPRESSING) not in SUPPRESS
