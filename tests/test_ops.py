"""O2-O4: failed and stuck participants found, their histories replayed, a fix
deployed and the failed runs reset in bulk, completing without a second mail.

The "bug" lives in a worker of this test's own (on its own task queue): its
`update_contact` activity fails for good for some contacts and keeps failing
retryably for another. The "fix" is the product's own worker code on the same
queue.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity, workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from journeys import ops
from journeys.enrolment import enrol
from journeys.models import UpdateContactInput, journey_workflow_id
from journeys.store.journeys import get_journey
from tests.builders import linear_journey, mail
from tests.conftest import Stack
from tests.helpers import create_contact, eventually, publish, record_history, run_ops
from worker import WORKER_OPTIONS, WORKFLOWS, Outbound, bound_activities

# Contacts for whom the buggy activity fails retryably (the rest fail for good).
RETRYING: set[str] = set()


@activity.defn(name="update_contact")
async def buggy_update_contact(input: UpdateContactInput) -> None:
    """The deployed bug: fails for good for Ann and Bob, keeps retrying for Cy."""
    if input.contact_id in RETRYING:
        raise ApplicationError("the relay of plans is down", non_retryable=False)
    raise ApplicationError("KeyError: 'plan' (a bug in update_contact)", non_retryable=True)


@asynccontextmanager
async def worker_on(
    stack: Stack, task_queue: str, *, buggy: bool, dispatch: bool = False
) -> AsyncIterator[None]:
    from activities.smtp import SmtpSender

    settings = stack.settings.model_copy(update={"task_queue": task_queue})
    outbound = Outbound(smtp=SmtpSender(settings.smtp_url), http=httpx.AsyncClient(), sms=None)
    activities = bound_activities(settings, stack.pool, outbound, stack.temporal)
    if buggy:
        activities = [
            buggy_update_contact if getattr(a, "__name__", "") == "update_contact" else a
            for a in activities
        ]
    async with Worker(
        stack.temporal,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        **WORKER_OPTIONS,
    ):
        yield
    await outbound.http.aclose()
    await outbound.smtp.close()


async def _closed(stack: Stack, workflow_id: str) -> WorkflowExecutionStatus | None:
    for _ in range(200):
        status = (await stack.temporal.get_workflow_handle(workflow_id).describe()).status
        if status != WorkflowExecutionStatus.RUNNING:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} still running")


async def test_failed_participants_are_found_replayed_reset_and_complete_without_a_second_mail(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:6]
    key = f"ops-{tag}"
    task_queue = f"ops-{tag}"
    await publish(
        stack.http,
        linear_journey(
            key,
            "Ops",
            ("welcome", mail("Welcome {{ contact.first_name }}")),
            ("upgrade", {"type": "update_contact", "set": {"plan": "pro"}}),
        ),
    )
    journey = await get_journey(stack.pool, key)
    assert journey is not None
    ann = await create_contact(stack.http, email=f"ann-{tag}@example.com", first_name="Ann")
    bob = await create_contact(stack.http, email=f"bob-{tag}@example.com", first_name="Bob")
    cy = await create_contact(stack.http, email=f"cy-{tag}@example.com", first_name="Cy")
    RETRYING.add(cy)
    failing = [ann, bob]

    async with worker_on(stack, task_queue, buggy=True):
        await enrol(
            stack.temporal,
            stack.pool,
            task_queue,
            journey,
            [uuid.UUID(c) for c in (*failing, cy)],
        )
        for contact in failing:
            status = await _closed(stack, journey_workflow_id(key, contact))
            assert status == WorkflowExecutionStatus.FAILED
        # Each got the welcome mail before the failing step.
        for contact in failing:
            view = (await stack.http.get(f"/journeys/{key}/participants/{contact}")).json()
            assert view["status"] == "failed"
            assert view["current_step"] == "upgrade"
            assert "KeyError: 'plan'" in view["reason"] and "upgrade" in view["reason"]
            assert [m["step"] for m in view["messages"]] == ["welcome"]
        handle = stack.temporal.get_workflow_handle(journey_workflow_id(key, ann))
        try:
            await handle.result()
            raise AssertionError("the run should have failed")
        except WorkflowFailureError as exc:
            assert "step `upgrade` failed" in str(exc.cause)
        await record_history(handle, "journey-step-failed")
        dossier = (await stack.http.get(f"/contacts/{ann}/dossier")).json()["entries"]
        assert any(e["kind"] == "journey_failed" and "upgrade" in e["title"] for e in dossier), (
            dossier
        )

        # Failed: from Temporal visibility, with the step and the reason.
        found = await eventually(
            lambda: ops.failed_runs(stack.temporal, journey=key), lambda f: len(f) >= 2
        )
        assert {f.participant for f in found} == set(failing)
        assert all(f.step == "upgrade" and "KeyError: 'plan'" in f.reason for f in found)
        assert await ops.failed_runs(stack.temporal, journey=key, step="welcome") == []
        code, out, err = await run_ops(
            stack.settings.temporal_address, "failed", "--journey", key, "--since", "P1D"
        )
        assert code == 0, err
        assert journey_workflow_id(key, ann) in out and "KeyError: 'plan'" in out

        # Stuck: Cy's activity keeps retrying.
        stuck = await eventually(
            lambda: ops.stuck_runs(
                stack.temporal, now=datetime.now(UTC), older_than=timedelta(0), journey=key
            ),
            lambda found: len(found) >= 1,
        )
        assert stuck[0].participant == cy and stuck[0].activity == "update_contact"
        assert stuck[0].attempt >= 2 and "relay of plans is down" in (stuck[0].last_error or "")
        assert (
            await ops.stuck_runs(
                stack.temporal,
                now=datetime.now(UTC),
                older_than=timedelta(hours=1),
                journey=key,
            )
            == []
        )
        view = (await stack.http.get(f"/journeys/{key}/participants/{cy}")).json()
        assert view["status"] == "running" and view["retrying"]["activity"] == "update_contact"
        assert view["retrying"]["attempt"] >= 2
        assert "relay of plans is down" in view["retrying"]["last_error"]
        code, out, err = await run_ops(
            stack.settings.temporal_address, "stuck", "--journey", key, "--older-than", "PT0S"
        )
        assert code == 0, err
        assert journey_workflow_id(key, cy) in out and "relay of plans is down" in out

    # Replay: the histories replay on the code on disk; a changed workflow does not.
    query = ops.runs_query(journey=key)
    replayed = await ops.replay_runs(stack.temporal, query, WORKFLOWS)
    assert len(replayed) == 3 and all(r.ok for r in replayed), replayed
    changed = await ops.replay_runs(stack.temporal, query, [ReorderedJourney])
    assert len(changed) == 3 and not any(r.ok for r in changed)
    assert all("Nondeterminism" in (r.error or "") for r in changed), changed
    code, out, err = await run_ops(stack.settings.temporal_address, "replay", "--journey", key)
    assert code == 0, err
    assert "3 runs replayed on this code: 3 cleanly, 0 not" in out

    # The fix is deployed (the product's own activity), and the failed runs are reset.
    async with worker_on(stack, task_queue, buggy=False):
        dry = await ops.reset_runs(
            stack.temporal,
            ops.runs_query(journey=key, where='ExecutionStatus = "Failed"'),
            "last-good",
            reason="test",
            dry_run=True,
        )
        assert [o.outcome for o in dry] == ["skipped", "skipped"]
        assert all(o.detail.startswith("would reset to event") for o in dry)
        code, out, err = await run_ops(
            stack.settings.temporal_address,
            "reset",
            "--journey",
            key,
            "--query",
            'ExecutionStatus = "Failed"',
            "--to",
            "last-good",
            "--reason",
            "fixed the plan bug",
        )
        assert code == 0, err
        assert "reset 2, skipped 0, errors 0" in out
        for contact in (*failing, cy):
            status = await _closed(stack, journey_workflow_id(key, contact))
            assert status == WorkflowExecutionStatus.COMPLETED, contact
            view = (await stack.http.get(f"/journeys/{key}/participants/{contact}")).json()
            assert view["status"] == "completed"
            fields = (await stack.http.get(f"/contacts/{contact}")).json()
            assert fields["fields"]["plan"] == "pro"
        await record_history(
            stack.temporal.get_workflow_handle(journey_workflow_id(key, cy)),
            "journey-activity-retried-then-completed",
        )
        # The welcome mail went out before the reset point: not again.
        await asyncio.sleep(0.5)
        for contact in (*failing, cy):
            email = (await stack.http.get(f"/contacts/{contact}")).json()["email"]
            assert len(stack.mail_to(email)) == 1, email
        assert await ops.failed_runs(stack.temporal, journey=key) == []

        # The old failed runs still match the query; reset again, they are skipped: a
        # reset of a run that is no longer the participant's would end the one they are in.
        again = await ops.reset_runs(
            stack.temporal,
            ops.runs_query(journey=key, where='ExecutionStatus = "Failed"'),
            "last-good",
            reason="test",
        )
        assert [(o.outcome, o.detail) for o in again] == [
            ("skipped", "no longer the participant's run")
        ] * 2

        # Back to the very start: the welcome step runs again, and finds its mail sent
        # under the same key (a reset keeps the chain's first run id).
        first = await ops.reset_runs(
            stack.temporal,
            ops.runs_query(
                journey=key,
                where=f'WorkflowId = "{journey_workflow_id(key, ann)}" '
                'AND ExecutionStatus = "Completed"',
            ),
            "first",
            reason="test",
        )
        assert [o.outcome for o in first] == ["reset"], first
        handle = stack.temporal.get_workflow_handle(journey_workflow_id(key, ann))
        assert handle.run_id is None  # the latest run: the reset's
        await asyncio.wait_for(handle.result(), 30)
        history = await handle.fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "send_email" in scheduled  # the welcome step did run again
        await asyncio.sleep(0.5)
        email = (await stack.http.get(f"/contacts/{ann}")).json()["email"]
        assert len(stack.mail_to(email)) == 1


@workflow.defn(name="JourneyWorkflow", sandboxed=False)
class ReorderedJourney:
    """A change to the workflow that alters command order without a patch: a timer
    before anything else."""

    @workflow.run
    async def run(self, input: Any) -> None:
        await workflow.sleep(timedelta(seconds=1))


async def test_the_ops_endpoints_need_an_admin_key_and_name_bad_input(stack: Stack) -> None:
    for path in ("/ops/failed", "/ops/stuck"):
        response = await stack.http.get(path)
        assert response.status_code == 200, response.text
    made = await stack.http.post(
        "/api-keys", json={"name": f"ops-reader-{uuid.uuid4().hex[:6]}", "scopes": ["write"]}
    )
    assert made.status_code == 201, made.text
    writer = {"Authorization": f"Bearer {made.json()['key']}"}
    refused = await stack.http.get("/ops/failed", headers=writer)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]

    bad_to = await stack.http.post("/ops/reset", json={"to": "yesterday"})
    assert bad_to.status_code == 422
    assert bad_to.json()["detail"][0]["loc"] == ["body", "to"]
    assert "last-good, first or step:" in bad_to.json()["detail"][0]["msg"]
    bad_where = await stack.http.post("/ops/replay", json={"where": "NoSuchField = 1 AND ("})
    assert bad_where.status_code == 422, bad_where.text
    assert bad_where.json()["detail"][0]["loc"] == ["body", "where"]
    bad_since = await stack.http.get("/ops/failed", params={"since": "a day"})
    assert bad_since.status_code == 422
    replay = await stack.http.post("/ops/replay", json={"journey": "no-such-journey"})
    assert replay.status_code == 200 and replay.json() == {"replayed": 0, "failed": 0, "runs": []}
