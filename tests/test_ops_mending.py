"""Issue 24, "every failure can be mended": a failed send is tried again by a reset (once
per reset, never a sent one); a run whose workflow task keeps failing and an activity
that hangs at its first attempt are listed by `ops stuck`; and `journeys ops` finds the
Temporal server of `journeys dev` (or says which address it tried)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from journeys import ops
from journeys.devstack import free_port
from journeys.enrolment import enrol as enrol_runs
from journeys.models import (
    SA_JOURNEY,
    SA_PARTICIPANT,
    SendEmailInput,
    SendResult,
    journey_workflow_id,
)
from journeys.store import messages
from journeys.store.journeys import get_journey
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    enrol,
    eventually,
    participant,
    publish,
    run_ops,
    wait_until_done,
)
from tests.test_dev_command import start_dev, stop_dev
from worker import WORKFLOWS, Outbound, bound_activities

SEATS = "<p>{{ 100 // contact.seats }} euro a seat</p>"


async def _ended(stack: Stack, workflow_id: str, not_run: str | None = None) -> dict[str, Any]:
    """The participant's latest run once it has ended (and is not `not_run`)."""
    handle = stack.temporal.get_workflow_handle(workflow_id)
    for _ in range(300):
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING and described.run_id != not_run:
            return {"run_id": described.run_id, "status": described.status}
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} did not end")


async def _failed_lines(stack: Stack, contact: str) -> list[dict[str, Any]]:
    dossier = (await stack.http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    return [e for e in dossier if e["kind"] == "journey_failed"]


async def test_a_reset_tries_a_failed_send_again_and_sends_it_once_the_data_is_fixed(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:6]
    key = f"mend-{tag}"
    await publish(stack.http, linear_journey(key, "Mend", ("seats", mail("Per seat", SEATS))))
    email = f"mend-{tag}@example.com"
    external_id = f"mend-{tag}"
    contact = await create_contact(stack.http, email=email, external_id=external_id)
    await enrol(stack.http, key, contact)
    workflow_id = journey_workflow_id(key, contact)
    first = await _ended(stack, workflow_id)
    assert first["status"] == WorkflowExecutionStatus.FAILED
    view = await participant(stack.http, key, contact)
    assert view["status"] == "failed" and "template failed" in view["reason"], view
    assert [m["status"] for m in view["messages"]] == ["failed"]
    assert len(await _failed_lines(stack, contact)) == 1

    # Reset with the data still wrong: the send is tried again (and fails on the
    # template again, not on "failed earlier"); no second journey_failed line.
    code, out, err = await run_ops(
        stack.settings.temporal_address,
        "reset",
        "--journey",
        key,
        "--query",
        'ExecutionStatus = "Failed"',
        "--to",
        "last-good",
    )
    assert code == 0, err
    assert "reset 1, skipped 0, errors 0" in out, out
    second = await _ended(stack, workflow_id, not_run=first["run_id"])
    assert second["status"] == WorkflowExecutionStatus.FAILED
    view = await participant(stack.http, key, contact)
    assert view["run_id"] == second["run_id"] != first["run_id"]
    assert "template failed" in view["reason"] and "failed earlier" not in view["reason"], view
    assert len(await _failed_lines(stack, contact)) == 1

    # The data fixed, a reset to the start sends the mail.
    fixed = await stack.http.post(
        "/contacts", json={"external_id": external_id, "fields": {"seats": 4}}
    )
    assert fixed.status_code == 200, fixed.text
    outcomes = await ops.reset_runs(
        stack.temporal,
        ops.runs_query(journey=key, where='ExecutionStatus = "Failed"'),
        "first",
        reason="seats filled in",
    )
    # The first failed run is no longer the participant's: left alone.
    assert sorted(o.outcome for o in outcomes) == ["reset", "skipped"], outcomes
    [outcome] = [o for o in outcomes if o.outcome == "reset"]
    assert outcome.run_id == second["run_id"]
    third = await _ended(stack, workflow_id, not_run=second["run_id"])
    assert third["status"] == WorkflowExecutionStatus.COMPLETED
    assert third["run_id"] == outcome.new_run_id
    [sent] = await stack.wait_for_mail(email, 1)
    assert sent["subject"] == "Per seat"
    view = await participant(stack.http, key, contact)
    assert view["status"] == "completed" and view["run_id"] == third["run_id"], view
    assert [m["status"] for m in view["messages"]] == ["sent"]
    assert len(await _failed_lines(stack, contact)) == 1

    # A sent message is never sent again, whatever is reset.
    [again] = await ops.reset_runs(
        stack.temporal,
        ops.runs_query(journey=key, where='ExecutionStatus = "Completed"'),
        "first",
        reason="test",
    )
    assert again.outcome == "reset", again
    fourth = await _ended(stack, workflow_id, not_run=third["run_id"])
    assert fourth["status"] == WorkflowExecutionStatus.COMPLETED
    await asyncio.sleep(0.5)
    assert len(stack.mail_to(email)) == 1


async def test_a_failed_message_is_claimed_again_by_another_run_only(stack: Stack) -> None:
    """The claim itself: the run that failed a message (a retry of its attempt) finds it
    failed; another run of the chain (a reset's) claims it again, once; a sent one never."""
    contact = uuid.UUID(await create_contact(stack.http))
    key = f"claim-again/{uuid.uuid4()}"

    async def claim(run_id: str, skip: str | None = None) -> Any:
        [row] = await messages.claim_messages(
            stack.pool,
            [
                messages.Claim(
                    idempotency_key=key,
                    channel="email",
                    workflow_id="journey/claim-again/x",
                    journey_key="claim-again",
                    version=1,
                    step="mail",
                    contact_id=contact,
                    recipient="claim-again@example.com",
                    skip=skip,
                    run_id=run_id,
                )
            ],
            lease_owner=uuid.uuid4(),
            lease=timedelta(seconds=10),
        )
        return row

    first = await claim("run-a")
    assert (first["status"], first["claimed"]) == ("sending", True)
    await messages.finish_message(
        stack.pool, first["id"], "failed", "template failed", run_id="run-a"
    )
    retried = await claim("run-a")
    assert (retried["status"], retried["claimed"], retried["error"]) == (
        "failed",
        False,
        "template failed",
    )
    reset = await claim("run-b")
    assert (reset["id"], reset["status"], reset["claimed"]) == (first["id"], "sending", True)
    assert reset["error"] is None
    # Two claims of the new run at once (a retry while the first still holds the lease):
    # the second finds it taken.
    assert (await claim("run-b"))["claimed"] is False
    await messages.finish_message(
        stack.pool, first["id"], "failed", "still no seats", run_id="run-b"
    )
    assert (await claim("run-b"))["status"] == "failed"
    # A reset after the contact unsubscribed: skipped, not sent.
    skipped = await claim("run-c", skip="unsubscribed")
    assert (skipped["status"], skipped["claimed"], skipped["error"]) == (
        "skipped",
        True,
        "unsubscribed",
    )
    await stack.pool.execute("UPDATE messages SET status = 'sent' WHERE id = $1", first["id"])
    assert (await claim("run-d"))["status"] == "sent"
    assert (await claim("run-d"))["claimed"] is False


async def _stuck(stack: Stack, key: str, older_than: timedelta) -> list[ops.StuckRun]:
    return await ops.stuck_runs(
        stack.temporal, now=datetime.now(UTC), older_than=older_than, journey=key
    )


async def test_ops_stuck_lists_a_run_whose_workflow_task_keeps_failing(stack: Stack) -> None:
    """The issue's 200-level condition: every participant's first workflow task failed for
    ever, and `ops stuck` listed none of them. Started straight through Temporal here, with
    an input the workflow cannot decode."""
    key = f"broken-{uuid.uuid4().hex[:6]}"
    contact = str(uuid.uuid4())
    broken = await stack.temporal.start_workflow(
        "JourneyWorkflow",
        {"journey_key": key, "definition": "not a definition"},
        id=journey_workflow_id(key, contact),
        task_queue=stack.settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(SA_JOURNEY), key),
                SearchAttributePair(SearchAttributeKey.for_keyword(SA_PARTICIPANT), contact),
            ]
        ),
    )
    try:
        await asyncio.sleep(2.5)
        [task] = await eventually(
            lambda: _stuck(stack, key, timedelta(seconds=2)), lambda found: len(found) == 1
        )
        assert (task.participant, task.problem, task.activity) == (
            contact,
            "workflow task failing",
            None,
        )
        assert task.attempt >= 2 and datetime.now(UTC) - task.since >= timedelta(seconds=2)
        assert "Failed decoding arguments" in (task.last_error or ""), task
        assert await _stuck(stack, key, timedelta(hours=1)) == []

        listed = await stack.http.get("/ops/stuck", params={"journey": key, "older_than": "PT2S"})
        assert listed.status_code == 200, listed.text
        [view] = listed.json()
        assert (view["workflow_id"], view["problem"], view["activity"]) == (
            broken.id,
            "workflow task failing",
            None,
        )
        code, out, err = await run_ops(
            stack.settings.temporal_address, "stuck", "--journey", key, "--older-than", "PT2S"
        )
        assert code == 0, err
        assert broken.id in out and "Failed decoding arguments" in out, out

        # Before: `ops replay` called it clean (a replay stops at the last completed task).
        [replayed] = await ops.replay_runs(stack.temporal, f"WorkflowId = '{broken.id}'", WORKFLOWS)
        assert not replayed.ok, replayed
        assert (replayed.error or "").startswith(
            "its workflow task keeps failing: Failed decoding arguments"
        ), replayed

        # Temporal's own flag, after the fifth failed task (some 50 s in): shown.
        [flagged] = await eventually(
            lambda: _stuck(stack, key, timedelta(0)),
            lambda found: bool(found and found[0].reported_problems),
            timeout=120,
        )
        assert "category=WorkflowTaskFailed" in flagged.reported_problems, flagged
        code, out, err = await run_ops(
            stack.settings.temporal_address, "stuck", "--journey", key, "--older-than", "PT0S"
        )
        assert code == 0, err
        assert "Temporal reports category=WorkflowTaskFailed" in out, out
    finally:
        await broken.terminate("test over")


@activity.defn(name="send_email")
async def hanging_send_email(input: SendEmailInput) -> SendResult:
    """The issue's send that hung after the mail went out: alive (heartbeating), never done."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.5)


@asynccontextmanager
async def hanging_worker(stack: Stack, task_queue: str) -> AsyncIterator[None]:
    from activities.smtp import SmtpSender

    settings = stack.settings.model_copy(update={"task_queue": task_queue})
    outbound = Outbound(smtp=SmtpSender(settings.smtp_url), http=httpx.AsyncClient(), sms=None)
    activities = [
        hanging_send_email if getattr(a, "__name__", "") == "send_email" else a
        for a in bound_activities(settings, stack.pool, outbound, stack.temporal)
    ]
    # No graceful shutdown: the hanging activity is cancelled when the worker stops.
    async with Worker(
        stack.temporal, task_queue=task_queue, workflows=WORKFLOWS, activities=activities
    ):
        yield
    await outbound.http.aclose()
    await outbound.smtp.close()


async def test_ops_stuck_lists_an_activity_that_runs_without_end_at_its_first_attempt(
    stack: Stack,
) -> None:
    """A send that heartbeats and never ends (attempt 1, until its 10-minute timeout):
    `GET /ops/stuck?older_than=PT1M` answered [] for it."""
    tag = uuid.uuid4().hex[:6]
    key = f"hang-{tag}"
    await publish(stack.http, linear_journey(key, "Hang", ("hello", mail("Hello"))))
    journey = await get_journey(stack.pool, key)
    assert journey is not None
    contact = await create_contact(stack.http, email=f"hang-{tag}@example.com")
    task_queue = f"hang-{tag}"
    handle = stack.temporal.get_workflow_handle(journey_workflow_id(key, contact))
    try:
        async with hanging_worker(stack, task_queue):
            await enrol_runs(stack.temporal, stack.pool, task_queue, journey, [uuid.UUID(contact)])
            await asyncio.sleep(2.5)
            [send] = await eventually(
                lambda: _stuck(stack, key, timedelta(seconds=2)), lambda found: len(found) == 1
            )
            assert (send.participant, send.step, send.problem) == (contact, "hello", "running")
            assert (send.activity, send.attempt, send.last_error) == ("send_email", 1, None)
            assert send.last_heartbeat is not None and send.last_heartbeat > send.since
            assert datetime.now(UTC) - send.since >= timedelta(seconds=2)
            assert await _stuck(stack, key, timedelta(hours=1)) == []

            listed = await stack.http.get(
                "/ops/stuck", params={"journey": key, "older_than": "PT2S"}
            )
            assert listed.status_code == 200, listed.text
            [view] = listed.json()
            assert (view["problem"], view["activity"], view["attempt"]) == (
                "running",
                "send_email",
                1,
            )
            code, out, err = await run_ops(
                stack.settings.temporal_address, "stuck", "--journey", key, "--older-than", "PT2S"
            )
            assert code == 0, err
            assert handle.id in out and "send_email" in out and "last heartbeat" in out, out
    finally:
        await handle.terminate("test over")


async def test_ops_finds_the_temporal_server_of_journeys_dev(tmp_path: Path) -> None:
    """`journeys dev --temporal-port N` in a folder, then `journeys ops` in the same folder
    without TEMPORAL_ADDRESS: it talks to that server (its runs are there)."""
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp")}
    process = await start_dev(tmp_path / ".journeys", ports)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env["COLUMNS"] = "200"

    def ops_here(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "journeys.cli", "ops", *args],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['api']}", headers={"Authorization": "Bearer dev-key"}
        ) as http:
            await publish(http, linear_journey("found", "Found", ("hello", mail("Hello"))))
            contact = await create_contact(http)
            await enrol(http, "found", contact)
            await wait_until_done(http, "found", contact)
        done = await asyncio.to_thread(ops_here, "replay", "--journey", "found")
        assert done.returncode == 0, done.stderr
        assert "1 runs replayed on this code: 1 cleanly" in done.stdout, done.stdout

        # Nobody there: the address tried, and where it came from.
        nowhere = f"127.0.0.1:{free_port()}"
        refused = await asyncio.to_thread(ops_here, "failed", TEMPORAL_ADDRESS=nowhere)
        assert refused.returncode == 1
        assert f"cannot reach Temporal at {nowhere} (TEMPORAL_ADDRESS)" in refused.stderr, (
            refused.stderr
        )
    finally:
        await stop_dev(process)
    stale = await asyncio.to_thread(ops_here, "failed")
    assert stale.returncode == 1
    assert f"cannot reach Temporal at 127.0.0.1:{ports['temporal']}" in stale.stderr, stale.stderr
    assert ".journeys/temporal-address" in stale.stderr, stale.stderr


async def test_the_participant_view_says_when_the_runs_own_code_keeps_failing(
    stack: Stack,
) -> None:
    """Before: `running`, an empty history, and nothing to say why."""
    key = f"broken-view-{uuid.uuid4().hex[:6]}"
    await publish(stack.http, linear_journey(key, "Broken view", ("pause", mail("Hi"))))
    contact = await create_contact(stack.http)
    await enrol(stack.http, key, contact)
    workflow_id = journey_workflow_id(key, contact)
    await _ended(stack, workflow_id)
    # The same participant's next run cannot read its input (as a bug would make it).
    broken = await stack.temporal.start_workflow(
        "JourneyWorkflow",
        {"journey_key": key, "definition": "not a definition"},
        id=workflow_id,
        task_queue=stack.settings.task_queue,
    )
    try:
        view = await eventually(
            lambda: participant(stack.http, key, contact),
            lambda found: found["retrying"] is not None,
        )
        assert view["status"] == "running"
        assert view["run_id"] == broken.result_run_id
        assert view["retrying"]["activity"] == "workflow task"
        assert view["retrying"]["attempt"] >= 2
        assert "Failed decoding arguments" in view["retrying"]["last_error"]
    finally:
        await broken.terminate("test over")
