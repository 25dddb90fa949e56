"""Enrolment as recorded intent, on the real stack: an interrupted enrolment is finished by
the same call made again, or by the worker's sweep, and never starts a second run.

The interruption itself (PostgreSQL stopped mid-call) is the fault suite's; here the state
it leaves is built directly: intents written, one run started under its intent and ended,
nothing marked."""

from __future__ import annotations

import uuid

from journeys.enrolment import start_participant, sweep_intents
from journeys.store.enrolments import record_intents
from journeys.store.journeys import get_journey
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import create_contact, enrol, participant, publish, wait_until_done


async def _runs_of(stack: Stack, key: str, contact_id: str) -> list[str]:
    query = f"WorkflowId = 'journey/{key}/{contact_id}'"
    return [w.run_id async for w in stack.temporal.list_workflows(query)]


async def _interrupted_call(stack: Stack, key: str, *contact_ids: str) -> str:
    """What a call cut off after its starts leaves: pending intents for `contact_ids`, the
    first contact's run started under its intent and ended (the rest never started)."""
    journey = await get_journey(stack.pool, key)
    assert journey is not None
    intents = await record_intents(
        stack.pool, key, journey.version, [uuid.UUID(c) for c in contact_ids], None
    )
    first = next(i for i in intents if str(i.contact_id) == contact_ids[0])
    handle = await start_participant(
        stack.temporal, stack.settings.task_queue, journey, first.contact_id, first.id
    )
    await handle.result()
    assert handle.result_run_id is not None
    return handle.result_run_id


async def test_the_same_call_again_finishes_an_interrupted_enrolment(stack: Stack) -> None:
    http, key = stack.http, f"intent-retry-{uuid.uuid4().hex[:6]}"
    await publish(http, linear_journey(key, "Intent retry", ("hello", mail("Hello"))))
    started, never_started = await create_contact(http), await create_contact(http)
    earlier_run = await _interrupted_call(stack, key, started, never_started)

    answer = await enrol(http, key, started, never_started)
    by_contact = {e["contact_id"]: e for e in answer["enrolments"]}
    assert by_contact[started]["status"] == "enrolled"
    assert by_contact[started]["run_id"] == earlier_run, "a second run was started"
    assert by_contact[never_started]["status"] == "enrolled"
    await wait_until_done(http, key, never_started)

    assert await _runs_of(stack, key, started) == [earlier_run]
    for contact_id in (started, never_started):
        view = await participant(http, key, contact_id)
        assert view["status"] == "completed", view
        messages = await stack.pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey_key = $1 AND contact_id = $2",
            key,
            uuid.UUID(contact_id),
        )
        assert messages == 1, f"{contact_id} got {messages} mails"
    left = await stack.pool.fetchval(
        "SELECT count(*) FROM enrolment_intents WHERE journey_key = $1", key
    )
    assert left == 0, "intents without a request key are gone once done"


async def test_the_worker_sweep_finishes_an_enrolment_nobody_asked_again(stack: Stack) -> None:
    http, key = stack.http, f"intent-sweep-{uuid.uuid4().hex[:6]}"
    await publish(http, linear_journey(key, "Intent sweep", ("hello", mail("Hello"))))
    started, never_started = await create_contact(http), await create_contact(http)
    earlier_run = await _interrupted_call(stack, key, started, never_started)
    unknown = await http.get(f"/journeys/{key}/participants/{started}")
    assert unknown.status_code == 404, "the run is not known before the sweep"

    finished = await sweep_intents(
        stack.temporal, stack.pool, stack.settings.task_queue, older_than=0
    )
    assert finished >= 2
    assert (await participant(http, key, started))["run_id"] == earlier_run
    await wait_until_done(http, key, never_started)
    assert await _runs_of(stack, key, started) == [earlier_run]
    dossier = (await http.get(f"/contacts/{started}/dossier")).json()
    entered = [e for e in dossier["entries"] if e.get("kind") == "journey_entered"]
    assert len(entered) == 1, dossier


async def test_an_idempotency_key_answers_a_finished_call_the_same(stack: Stack) -> None:
    http, key = stack.http, f"intent-key-{uuid.uuid4().hex[:6]}"
    await publish(http, linear_journey(key, "Intent key", ("hello", mail("Hello"))))
    contact = await create_contact(http)
    headers = {"Idempotency-Key": f"crm-sync-{uuid.uuid4()}"}

    async def call(headers: dict[str, str] | None = None) -> dict[str, object]:
        response = await http.post(
            f"/journeys/{key}/enrolments", json={"contact_ids": [contact]}, headers=headers
        )
        assert response.status_code == 200, response.text
        (enrolment,) = response.json()["enrolments"]
        return dict(enrolment)

    first = await call(headers=headers)
    await wait_until_done(http, key, contact)
    again = await call(headers=headers)
    assert again == first, "the retry answered differently"
    assert await _runs_of(stack, key, contact) == [first["run_id"]]
    # Without the key the same call is a new enrolment: the journey allows re-entry.
    anew = await call()
    assert anew["status"] == "enrolled" and anew["run_id"] != first["run_id"]
    bad = await http.post(
        f"/journeys/{key}/enrolments",
        json={"contact_ids": [contact]},
        headers={"Idempotency-Key": "two words"},
    )
    assert bad.status_code == 422 and "idempotency-key" in bad.text.lower(), bad.text


async def test_an_enrolment_of_a_refused_contact_answers_the_same_under_its_key(
    stack: Stack,
) -> None:
    http, key = stack.http, f"intent-once-{uuid.uuid4().hex[:6]}"
    definition = linear_journey(key, "Once", ("hello", mail("Hello")))
    await publish(http, {**definition, "reentry": {"policy": "once"}})
    contact = await create_contact(http)
    await enrol(http, key, contact)
    await wait_until_done(http, key, contact)
    headers = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    answers = []
    for _ in range(2):
        response = await http.post(
            f"/journeys/{key}/enrolments", json={"contact_ids": [contact]}, headers=headers
        )
        answers.append(response.json()["enrolments"][0])
    assert answers[0] == answers[1] and answers[0]["status"] == "refused", answers
    dossier = (await http.get(f"/contacts/{contact}/dossier")).json()
    refusals = [e for e in dossier["entries"] if e.get("kind") == "journey_refused"]
    assert len(refusals) == 1, dossier
