"""Worker versioning (O4): a run stays on the build it started on while new runs take
the build made current; `journeys ops versions` shows which build serves which runs."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from journeys import ops
from journeys.enrolment import enrol
from journeys.models import journey_workflow_id
from journeys.settings import Settings
from journeys.store.journeys import get_journey
from tests.builders import journey
from tests.conftest import Stack
from tests.helpers import create_contact, eventually, publish, run_ops
from worker import running_worker


async def _promote(stack: Stack, deployment: str, build: str) -> None:
    """Make `build` current, once its worker has polled (the server wants pollers)."""
    for _ in range(50):
        try:
            await ops.promote(stack.temporal, deployment, build)
            return
        except RPCError:
            await asyncio.sleep(0.2)
    await ops.promote(stack.temporal, deployment, build)


async def test_runs_stay_on_their_build_while_new_ones_take_the_current_one(
    stack: Stack,
) -> None:
    tag = uuid.uuid4().hex[:6]
    deployment, key = f"journeys-{tag}", f"versioned-{tag}"
    await publish(
        stack.http,
        journey(
            key,
            steps={
                "wait_go": {
                    "type": "wait_for_event",
                    "event": "custom",
                    "name": f"go_{tag}",
                    "timeout": "P1D",
                    "on_event": "end",
                    "on_timeout": "end",
                },
                "end": {"type": "end"},
            },
        ),
    )
    published = await get_journey(stack.pool, key)
    assert published is not None
    ann = await create_contact(stack.http, email=f"ann-{tag}@example.com")
    bob = await create_contact(stack.http, email=f"bob-{tag}@example.com")

    def build(build_id: str) -> Settings:
        return stack.settings.model_copy(
            update={
                "task_queue": f"versioned-{tag}",
                "deployment_name": deployment,
                "build_id": build_id,
            }
        )

    async with running_worker(build("a"), stack.temporal, dispatch=False):
        await _promote(stack, deployment, "a")
        await enrol(stack.temporal, stack.pool, f"versioned-{tag}", published, [uuid.UUID(ann)])
        async with running_worker(build("b"), stack.temporal, dispatch=False):
            await asyncio.sleep(1)  # build b's worker polls
            code, out, err = await run_ops(
                stack.settings.temporal_address, "promote", "b", "--deployment", deployment
            )
            assert code == 0, err
            assert f"{deployment}: b is current (was a)" in out
            await enrol(stack.temporal, stack.pool, f"versioned-{tag}", published, [uuid.UUID(bob)])

            versions = await eventually(
                lambda: ops.deployment_versions(stack.temporal, deployment),
                lambda vs: (
                    [(v.build_id, v.open_journey_runs) for v in vs if v.build_id]
                    == [("b", 1), ("a", 1)]
                ),
            )
            assert [(v.build_id, v.status) for v in versions[:2]] == [
                ("b", "current"),
                ("a", "draining"),
            ]
            code, out, err = await run_ops(
                stack.settings.temporal_address, "versions", "--deployment", deployment
            )
            assert code == 0, err
            rows = [line.split("│")[1:5] for line in out.splitlines() if line.count("│") >= 5]
            cells = [[c.strip() for c in row] for row in rows]
            assert ["b", "current", "1", "1"] in cells and ["a", "draining", "1", "1"] in cells

            # The event reaches both: Ann's run finishes on build a, Bob's on build b.
            for contact in (ann, bob):
                posted = await stack.http.post(
                    "/events", json={"contact_id": contact, "name": f"go_{tag}"}
                )
                assert posted.status_code == 202, posted.text
            for contact, expected in ((ann, "a"), (bob, "b")):
                handle = stack.temporal.get_workflow_handle(journey_workflow_id(key, contact))
                await asyncio.wait_for(handle.result(), 30)
                described = await handle.describe()
                assert described.status == WorkflowExecutionStatus.COMPLETED
                info = described.raw_description.workflow_execution_info.versioning_info
                assert info.deployment_version.build_id == expected, contact


def test_the_worker_needs_both_deployment_and_build_id() -> None:
    try:
        Settings(secret="s", deployment_name="journeys")
    except ValueError as exc:
        assert "JOURNEYS_DEPLOYMENT and JOURNEYS_BUILD_ID together" in str(exc)
    else:
        raise AssertionError("a deployment without a build id was accepted")
