"""Enrolling a selection: an operation in the background, on the real stack."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.service import RPCError

from tests.builders import journey
from tests.conftest import API_KEY, Stack
from tests.helpers import create_contact, publish, query_selection, record_history, run_cli


async def wait_for_operation(
    http: httpx.AsyncClient, operation_id: str, timeout: float = 60
) -> dict[str, Any]:
    for _ in range(int(timeout * 5)):
        response = await http.get(f"/operations/{operation_id}")
        assert response.status_code == 200, response.text
        if (op := response.json())["status"] != "running":
            return dict(op)
        await asyncio.sleep(0.2)
    raise AssertionError(f"operation still running after {timeout}s: {op}")


def sleeper(key: str, **extra: Any) -> dict[str, Any]:
    return journey(
        key,
        steps={"nap": {"type": "wait", "duration": "P1Y", "next": "end"}, "end": {"type": "end"}},
        **extra,
    )


async def test_a_selection_is_enrolled_by_an_operation(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, selection = f"bulk-{tag}", f"bulk-sel-{tag}"
    await publish(http, sleeper(key))
    await query_selection(http, selection, "bulk_tag", tag)
    members = {await create_contact(http, fields={"bulk_tag": tag}) for _ in range(25)}
    outsider = await create_contact(http, fields={"bulk_tag": "other"})

    started = await http.post(f"/journeys/{key}/enrolments", json={"selection": selection})
    assert started.status_code == 202, started.text
    op = await wait_for_operation(http, started.json()["operation_id"])
    assert op["status"] == "completed", op
    assert (op["total"], op["done"], op["counts"]) == (25, 25, {"enrolled": 25}), op
    assert op["subject"] == {"journey": key, "selection": selection}

    query = f"JourneyKey = '{key}' AND ExecutionStatus = 'Running'"
    for _ in range(50):
        running = {w.id async for w in stack.temporal.list_workflows(query)}
        if len(running) == 25:
            break
        await asyncio.sleep(0.2)
    assert running == {f"journey/{key}/{c}" for c in members}
    assert f"journey/{key}/{outsider}" not in running
    operation = stack.temporal.get_workflow_handle(op["workflow_id"])
    await record_history(operation, "bulk-operation-enrol-selection")

    # Again: everyone is inside already, and nobody gets a second run.
    again = await http.post(f"/journeys/{key}/enrolments", json={"selection": selection})
    second = await wait_for_operation(http, again.json()["operation_id"])
    assert second["counts"] == {"already_enrolled": 25}, second


async def test_the_same_idempotency_key_answers_the_same_operation(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, selection = f"bulk-key-{tag}", f"bulk-key-sel-{tag}"
    await publish(http, sleeper(key, reentry={"policy": "once"}))
    await query_selection(http, selection, "bulk_tag", tag)
    for _ in range(3):
        await create_contact(http, fields={"bulk_tag": tag})
    headers = {"Idempotency-Key": f"nightly-{tag}"}
    ids = []
    for _ in range(2):
        response = await http.post(
            f"/journeys/{key}/enrolments", json={"selection": selection}, headers=headers
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["operation_id"])
    assert ids[0] == ids[1]
    op = await wait_for_operation(http, ids[0])
    assert op["counts"] == {"enrolled": 3}, op


async def test_what_an_enrolment_by_selection_refuses(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key = f"bulk-bad-{tag}"
    await publish(http, sleeper(key))
    missing = await http.post(f"/journeys/{key}/enrolments", json={"selection": "no-such"})
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"][0]["loc"] == ["body", "selection"]
    both = await http.post(
        f"/journeys/{key}/enrolments",
        json={"selection": "x", "contact_ids": [str(uuid.uuid4())]},
    )
    assert both.status_code == 422 and "either" in both.text, both.text
    unknown = await http.get(f"/operations/{uuid.uuid4()}")
    assert unknown.status_code == 404


async def test_the_cli_enrols_a_selection_with_a_progress_bar(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, selection = f"bulk-cli-{tag}", f"bulk-cli-sel-{tag}"
    await publish(http, sleeper(key))
    await query_selection(http, selection, "bulk_tag", tag)
    for _ in range(4):
        await create_contact(http, fields={"bulk_tag": tag})

    async def journeys(*args: str) -> tuple[int, str, str]:
        return await run_cli(stack.base_url, API_KEY, *args)

    code, out, err = await journeys("enrol", key, "--selection", selection)
    assert code == 0, err
    assert "4/4" in out and "completed" in out, out
    assert re.search(r"enrolled\s+│\s+4", out), out

    code, out, err = await journeys("enrol", key, "--selection", "no-such-selection")
    assert code == 1
    assert "selection 'no-such-selection' does not exist" in err, err


async def test_a_selection_entry_enrols_new_members_on_its_schedule(stack: Stack) -> None:
    http, tag = stack.http, uuid.uuid4().hex[:6]
    key, selection = f"entry-{tag}", f"entry-sel-{tag}"
    await query_selection(http, selection, "bulk_tag", tag)
    first = [await create_contact(http, fields={"bulk_tag": tag}) for _ in range(2)]
    entry = {"type": "selection", "selection": selection, "every": "PT1H"}
    await publish(http, sleeper(key, entry=entry, reentry={"policy": "once"}))

    schedule = stack.temporal.get_schedule_handle(f"entry/{key}")
    described = await schedule.describe()
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(hours=1)]

    async def runs_of_entry() -> list[dict[str, Any]]:
        rows = await stack.pool.fetch(
            "SELECT id FROM operations WHERE subject->>'journey' = $1 ORDER BY created_at", key
        )
        return [(await http.get(f"/operations/{r['id']}")).json() for r in rows]

    async def entry_runs(count: int) -> list[dict[str, Any]]:
        for _ in range(150):
            ops = await runs_of_entry()
            if len(ops) == count and all(op["status"] != "running" for op in ops):
                return ops
            await asyncio.sleep(0.2)
        raise AssertionError(f"expected {count} finished entry runs, got {ops}")

    await schedule.trigger()
    (one,) = await entry_runs(1)
    assert one["counts"] == {"enrolled": 2}, one
    # The schedule skips a trigger while its last run is open (overlap SKIP): the run
    # may still be finishing after its operation was marked.
    for _ in range(150):
        query = "WorkflowType = 'SelectionEntry' AND ExecutionStatus = 'Running'"
        if not [
            r async for r in stack.temporal.list_workflows(query) if r.id.startswith(f"entry/{key}")
        ]:
            break
        await asyncio.sleep(0.2)
    newcomer = await create_contact(http, fields={"bulk_tag": tag})
    await schedule.trigger()
    _, two = await entry_runs(2)
    async for run in stack.temporal.list_workflows("WorkflowType = 'SelectionEntry'"):
        if run.id.startswith(f"entry/{key}"):
            entry_run = stack.temporal.get_workflow_handle(run.id)
            await record_history(entry_run, "selection-entry-run")
            break
    # Only the newcomer: the others entered already and this journey is entered once.
    assert (two["total"], two["counts"]) == (1, {"enrolled": 1}), two
    for contact_id in [*first, newcomer]:
        view = (await http.get(f"/journeys/{key}/participants/{contact_id}")).json()
        assert view["status"] == "running", view

    # Another entry in a new version takes the schedule away.
    await publish(http, sleeper(key))
    with pytest.raises(RPCError):
        await schedule.describe()

    too_often = await http.post("/journeys", json=sleeper(key, entry={**entry, "every": "PT30S"}))
    assert too_often.status_code == 422 and "one minute" in too_often.text
    unknown = await http.post(
        "/journeys", json=sleeper(key, entry={**entry, "selection": "no-such"})
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["detail"][0]["loc"] == ["body", "entry", "selection"]


async def test_a_page_meeting_an_outage_is_done_again_and_a_bad_target_fails_alone() -> None:
    from temporalio.exceptions import ApplicationError

    from activities.bulk import PageState, _each_or_all

    targets = [uuid.uuid4() for _ in range(3)]

    async def mail_server_away(page: list[uuid.UUID], state: PageState) -> list[Any]:
        raise ApplicationError("the mail server is unavailable", type="Unavailable")

    with pytest.raises(ApplicationError):
        await _each_or_all(targets, mail_server_away, PageState())

    async def one_bad(page: list[uuid.UUID], state: PageState) -> list[Any]:
        if targets[1] in page:
            raise ApplicationError("contact has bad data", non_retryable=True)
        for contact_id in page:
            state.outcome(contact_id, "sent")
        return []

    state = PageState()
    errors = await _each_or_all(targets, one_bad, state)
    assert state.counts == {"sent": 2, "failed": 1} and state.done == 3
    assert [e["contact_id"] for e in errors] == [str(targets[1])]
