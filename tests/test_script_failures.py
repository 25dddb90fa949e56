"""A run_script call whose every attempt fails ends its `script/…` workflow Failed, with
the last error: Temporal's `ExecutionStatus = "Failed"` finds it, and so do
`GET /ops/failed` and `journeys ops failed`, with the journey, the step and the
participant (the contact). The participant itself goes on.

The real stack; only the wait between attempts is shortened, through Temporal's own
activity API (the five attempts with their backoff take seven minutes otherwise)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import RetryPolicy, WorkflowExecution
from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from journeys.models import journey_workflow_id
from tests.builders import linear_journey, wait
from tests.conftest import Stack
from tests.helpers import (
    create_contact,
    enrol,
    eventually,
    publish,
    record_history,
    run_ops,
    wait_for_step,
)
from workflows.script import SCRIPT_ATTEMPTS


async def _receiver(status: int) -> tuple[asyncio.Server, list[bytes]]:
    """A local HTTP endpoint for run_script that answers `status` to every call."""
    calls: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        calls.append(await reader.readexactly(length))
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), calls


async def _script_workflow(stack: Stack, parent: str) -> str:
    """The id of the participant's script call (started by the journey, not awaited)."""
    query = f'WorkflowType = "ScriptCallWorkflow" AND WorkflowId STARTS_WITH "script/{parent}/"'

    async def listed() -> list[str]:
        return [w.id async for w in stack.temporal.list_workflows(query)]

    [found] = await eventually(listed, lambda ids: len(ids) == 1)
    return found


async def _retry_quickly(stack: Stack, workflow_id: str) -> None:
    """Once the first attempt failed, the attempts left come 100 ms apart (as many)."""
    handle = stack.temporal.get_workflow_handle(workflow_id)

    async def pending() -> Any:
        return (await handle.describe()).raw_description.pending_activities

    [activity] = await eventually(pending, lambda p: len(p) == 1 and p[0].attempt >= 2)
    await stack.temporal.workflow_service.update_activity_options(
        UpdateActivityOptionsRequest(
            namespace=stack.temporal.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id),
            id=activity.activity_id,
            activity_options=ActivityOptions(
                retry_policy=RetryPolicy(
                    initial_interval=Duration(nanos=100_000_000),
                    backoff_coefficient=1.0,
                    maximum_interval=Duration(nanos=100_000_000),
                )
            ),
            update_mask=FieldMask(
                paths=[
                    "retry_policy.initial_interval",
                    "retry_policy.backoff_coefficient",
                    "retry_policy.maximum_interval",
                ]
            ),
        )
    )


async def test_a_script_call_that_fails_every_attempt_ends_failed_and_ops_lists_it(
    stack: Stack,
) -> None:
    http = stack.http
    key = f"script-fails-{uuid.uuid4().hex[:6]}"
    server, calls = await _receiver(503)
    port = server.sockets[0].getsockname()[1]
    await publish(
        http,
        linear_journey(
            key,
            "Failing script",
            ("hook", {"type": "run_script", "url": f"http://127.0.0.1:{port}/hooks/x"}),
            ("later", wait("PT1H")),
        ),
    )
    contact = await create_contact(http, email=f"{key}@example.com")
    async with server:
        await enrol(http, key, contact)
        await wait_for_step(http, key, contact, "later")
        parent = journey_workflow_id(key, contact)
        script_id = await _script_workflow(stack, parent)
        await _retry_quickly(stack, script_id)
        handle = stack.temporal.get_workflow_handle(script_id)
        for _ in range(300):
            described = await handle.describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.1)
    await record_history(handle, "script-call-failed")
    assert len(calls) == SCRIPT_ATTEMPTS

    # Failed, with the last error; found by Temporal's own status.
    assert described.status == WorkflowExecutionStatus.FAILED, described.status
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "answered 503" in str(failure.value.cause), failure.value.cause
    by_status = f'ExecutionStatus = "Failed" AND WorkflowId = "{script_id}"'

    async def failed_in_temporal() -> list[str]:
        return [w.id async for w in stack.temporal.list_workflows(by_status)]

    await eventually(failed_in_temporal, lambda ids: ids == [script_id])

    # The ops listing names the journey, the step and the participant.
    async def listed() -> list[dict[str, Any]]:
        answer = await http.get("/ops/failed", params={"journey": key})
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    [run] = await eventually(listed, lambda runs: len(runs) == 1)
    assert run["workflow_id"] == script_id, run
    assert (run["journey"], run["step"], run["participant"]) == (key, "hook", contact), run
    assert "answered 503" in run["reason"] and run["closed_at"], run
    # Filtered by step: the same call; by another step or journey: not.
    assert len((await http.get("/ops/failed", params={"step": "hook"})).json()) >= 1
    other = await http.get("/ops/failed", params={"journey": key, "step": "later"})
    assert other.json() == []
    code, out, err = await run_ops(
        stack.settings.temporal_address, "failed", "--journey", key, "--since", "P1D"
    )
    assert code == 0, err
    assert contact in out and script_id in out and "answered 503" in out, out

    # The dossier shows the call failed; the participant went on and is not failed.
    dossier = (await http.get(f"/contacts/{contact}/dossier")).json()["entries"]
    script = next(e for e in dossier if e["kind"] == "script")
    assert script["status"] == "failed", script
    view = (await http.get(f"/journeys/{key}/participants/{contact}")).json()
    assert (view["status"], view["current_step"]) == ("running", "later"), view
    await http.delete(f"/journeys/{key}/participants/{contact}")
