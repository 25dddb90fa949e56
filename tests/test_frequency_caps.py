"""Frequency caps on the real stack (G2): at most so many mails to a contact within a
period across journeys; a journey's mail over the cap waits until the cap allows it,
transactional ones go at once and do not count."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities
from activities.sends import CAPS_READ_SECONDS
from activities.smtp import SmtpSender
from journeys.definition import JourneyDefinition
from journeys.message_journeys import mail_input, mail_step, message_journey
from journeys.store.journeys import PublishedJourney
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import create_contact, enrol, publish, read_mail, wait_for_step, wait_until_done
from tests.test_e2e_catalogue import timers_of
from tests.test_send_once import send_input


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_frequency_caps_are_checked_when_set(stack: Stack) -> None:
    http = stack.http
    for channel, body, loc in (
        ("fax", {"max": 2, "per": "P7D"}, ["path", "channel"]),
        ("email", {"max": 0, "per": "P7D"}, ["body", "max"]),
        ("email", {"max": 2, "per": "a week"}, ["body", "per"]),
        ("email", {"max": 2, "per": "P7000Y"}, ["body", "per"]),
        ("email", {"max": 2, "per": "P7D", "every": "day"}, ["body", "every"]),
    ):
        refused = await http.put(f"/frequency-caps/{channel}", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == loc, refused.text
    assert (await http.delete("/frequency-caps/sms")).status_code == 404
    assert (await http.get("/frequency-caps")).json() == []


async def test_a_cap_holds_a_journeys_third_mail_until_the_first_is_a_week_old(
    stack: Stack,
) -> None:
    http = stack.http
    made = await http.put("/frequency-caps/email", json={"max": 2, "per": "P7D"})
    assert made.status_code == 200, made.text
    assert (await http.get("/frequency-caps")).json() == [
        {"channel": "email", "max": 2, "per": "P7D"}
    ]
    key, other = unique("capped"), unique("capped-other")
    email = f"{unique('capped')}@example.com"
    contact = ""
    try:
        await asyncio.sleep(CAPS_READ_SECONDS + 0.5)  # until every worker has read it
        await publish(
            http,
            linear_journey(
                key,
                "Capped",
                ("m1", mail("One")),
                ("m2", mail("Two")),
                ("code", {**mail("Your code"), "transactional": True}),
                ("m3", mail("Three")),
            ),
        )
        await publish(http, linear_journey(other, "Other", ("hello", mail("Hello"))))
        contact, fresh = await create_contact(http, email=email), await create_contact(http)
        await enrol(http, key, contact)
        for subject in ("One", "Two", "Your code"):
            await read_mail(http, email, subject)
        view = await wait_for_step(http, key, contact, "m3")
        first = datetime.fromisoformat(view["messages"][0]["created_at"])
        (fires,) = await timers_of(stack, view["workflow_id"])
        week = first + timedelta(days=7)
        assert week - timedelta(seconds=2) <= fires <= week + timedelta(seconds=2), (fires, week)
        assert "Frequency cap" in view["details"], view["details"]
        assert [m["status"] for m in view["messages"]] == ["sent", "sent", "sent"]
        # The cap counts per contact: someone else's mail goes at once.
        await enrol(http, other, fresh)
        assert (await wait_until_done(http, other, fresh))["status"] == "completed"

        # The send path itself: five new sends to one contact at once take the cap's two
        # places and no more (a lock per contact), and a retry of a claimed send is
        # never held back.
        activities = EmailActivities(
            stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url)
        )
        env = ActivityEnvironment()
        busy = await create_contact(http, email=f"{unique('busy')}@example.com")
        keys = [f"{unique('capped-send')}/1" for _ in range(5)]
        deferrals = {"channel": "email", "status": "deferred"}
        before = REGISTRY.get_sample_value("journeys_sends_total", deferrals) or 0.0
        results = await asyncio.gather(
            *(env.run(activities.send_email, send_input(busy, k)) for k in keys)
        )
        assert sorted(r.status for r in results) == ["deferred"] * 3 + ["sent"] * 2
        assert REGISTRY.get_sample_value("journeys_sends_total", deferrals) == before + 3
        deferred = next(r for r in results if r.status == "deferred")
        assert deferred.until is not None and deferred.reason is not None
        assert deferred.until - datetime.now(deferred.until.tzinfo) > timedelta(days=6)
        sent_key = next(k for k, r in zip(keys, results, strict=True) if r.status == "sent")
        retried = await env.run(activities.send_email, send_input(busy, sent_key))
        assert retried.status == "sent"
        assert retried.message_id == results[keys.index(sent_key)].message_id
    finally:
        assert (await http.delete("/frequency-caps/email")).status_code == 204
        await http.delete(f"/journeys/{key}/participants/{contact}")
        await asyncio.sleep(CAPS_READ_SECONDS + 0.5)  # no worker holds the next tests' mails


async def test_a_bulk_mail_marked_transactional_is_not_counted(stack: Stack) -> None:
    """A campaign action's or recurring send's message with `transactional` goes through
    the bulk path (never held) and is written as transactional: the caps do not count
    it against the contact's journey mails."""
    key = unique("service")
    journey = PublishedJourney(
        key=key,
        name="Service",
        version=1,
        published_at=datetime.now(UTC),
        definition=JourneyDefinition.model_validate(
            message_journey(key, "Service", {"subject": "Your visit", "html": "<p>x</p>"})
        ),
    )
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    counted = []
    for transactional in (False, True):
        step = mail_step(journey)
        assert step is not None
        step = step.model_copy(update={"transactional": transactional or None})
        contact = await create_contact(stack.http)
        key = unique("bulk")
        (sent,) = await activities.send_emails(
            [mail_input(journey, step, idempotency_key=key, workflow_id="bulk", contact_id=contact)]
        )
        assert not isinstance(sent, BaseException) and sent.status == "sent"
        counted.append(
            await stack.pool.fetchval(
                "SELECT transactional FROM messages WHERE idempotency_key = $1", key
            )
        )
    assert counted == [False, True]
