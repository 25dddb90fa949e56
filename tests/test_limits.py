"""Definition limits (issue 24): the longest journey with the longest ids a definition
allows runs to its end (Temporal must never terminate a run for what it shows), every
limit is refused with a short 422 naming it, and a run terminated from outside reads
`terminated` with the reason in the participant view and the dossier."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from temporalio.converter import encode_typed_search_attribute_value

from api.console.counts import StepPlace, step_counts
from journeys import ops
from journeys.definition.graph import _loop_without_wait
from journeys.definition.limits import (
    MAX_CONDITION_DEPTH,
    MAX_FOLLOW_UP_DEPTH,
    MAX_JSON_DEPTH,
    MAX_STEPS,
)
from journeys.models import (
    STEPS_TAKEN_KEY,
    journey_workflow_id,
    shown_steps_taken,
    step_token,
)
from tests.builders import journey, mail, wait
from tests.conftest import API_KEY, Stack
from tests.helpers import (
    api_served,
    create_contact,
    enrol,
    eventually,
    loop_lag,
    participant,
    publish,
    wait_for_step,
    wait_until_done,
)
from tests.test_console import csrf_of, said, signed_in

ROOT = Path(__file__).resolve().parent.parent
# Temporal's default limit on one search attribute value (limit.searchAttributeValueSize).
TEMPORAL_VALUE_LIMIT = 2048


def long_id(i: int) -> str:
    """A step id of the longest length allowed (64 characters)."""
    return f"s{i:03d}-" + "x" * 59


def split_chain(key: str, count: int) -> dict[str, Any]:
    """`count` steps in a row (splits, which wait for nothing and call no activity), the
    last an end step: every id 64 characters long."""
    ids = [long_id(i) for i in range(count)]
    steps: dict[str, Any] = {
        sid: {
            "type": "split",
            "branches": [{"percent": 50, "next": after}, {"percent": 50, "next": after}],
        }
        for sid, after in itertools.pairwise(ids)
    }
    steps[ids[-1]] = {"type": "end"}
    return journey(key, steps=steps, start=ids[0])


def nested_condition(levels: int) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": "plan", "op": "eq", "value": "pro"}
    for _ in range(levels - 1):
        condition = {"all": [condition]}
    return condition


def json_depth(data: Any) -> int:
    if isinstance(data, dict):
        return 1 + max((json_depth(v) for v in data.values()), default=0)
    if isinstance(data, list):
        return 1 + max((json_depth(v) for v in data), default=0)
    return 0


def deepest_journey(key: str) -> dict[str, Any]:
    """A condition as deep as allowed, its value a list nested to the JSON limit."""
    body = branch_journey(key, nested_condition(MAX_CONDITION_DEPTH))
    leaf = body["steps"]["check"]["if"]
    while "all" in leaf:
        leaf = leaf["all"][0]
    leaf["op"], leaf["value"] = "in", []
    while json_depth(body) < MAX_JSON_DEPTH:
        leaf["value"] = [leaf["value"]]
    assert json_depth(body) == MAX_JSON_DEPTH
    return body


def branch_journey(key: str, condition: dict[str, Any]) -> dict[str, Any]:
    return journey(
        key,
        steps={
            "check": {"type": "branch", "if": condition, "then": "done", "else": "done"},
            "done": {"type": "end"},
        },
    )


def test_shown_steps_fit_temporal_at_the_step_limit() -> None:
    """The attribute's value as the SDK encodes it, metadata included, stays under
    Temporal's limit for every step of the largest journey with the longest ids."""
    ids = {long_id(i) for i in range(MAX_STEPS)}
    shown = shown_steps_taken(ids)
    assert len(shown) == MAX_STEPS, "every step is shown"
    assert shown == sorted(step_token(step) for step in ids)
    payload = encode_typed_search_attribute_value(STEPS_TAKEN_KEY, shown)
    assert payload.ByteSize() < TEMPORAL_VALUE_LIMIT
    # Ids that fit are shown as they are (what an operator queries in the web UI).
    assert shown_steps_taken({"welcome", "mail1"}) == ["mail1", "welcome"]
    # A stored definition from before the limit: never over it, whatever its size.
    many = shown_steps_taken({long_id(i) for i in range(900)})
    assert encode_typed_search_attribute_value(STEPS_TAKEN_KEY, many).ByteSize() < 2048


def test_a_loop_check_walks_a_long_chain_without_recursion() -> None:
    class Step:
        waits = False

        def __init__(self, target: str | None) -> None:
            self.target = target

        def edges(self) -> list[Any]:
            from journeys.definition.common import Edge

            return [] if self.target is None else [Edge("next", self.target, ())]

    chain = {f"s{i}": Step(f"s{i + 1}") for i in range(5000)}
    chain["s5000"] = Step(None)
    assert _loop_without_wait(chain) is None
    chain["s5000"] = Step("s4990")
    assert _loop_without_wait(chain) == [f"s{i}" for i in range(4990, 5001)]


async def test_the_longest_journey_with_the_longest_ids_runs_to_its_end(stack: Stack) -> None:
    """Before: the steps taken grew past 2,048 bytes at the 33rd step and Temporal
    terminated the run; the participant read `removed` with no reason."""
    key = "limit-longest"
    await publish(stack.http, split_chain(key, MAX_STEPS))
    contact = await create_contact(stack.http)
    await enrol(stack.http, key, contact)
    view = await wait_until_done(stack.http, key, contact, timeout=60)
    assert view["status"] == "completed", view
    assert view["current_step"] == long_id(MAX_STEPS - 1)
    assert len(view["history"]) == MAX_STEPS
    described = await stack.temporal.get_workflow_handle(
        journey_workflow_id(key, contact)
    ).describe()
    shown = described.typed_search_attributes.get(STEPS_TAKEN_KEY)
    assert shown is not None and len(shown) == MAX_STEPS
    # The console counts each step as passed, by its token.
    places = {sid: StepPlace(sid) for sid in (long_id(0), long_id(MAX_STEPS - 1))}
    for _ in range(50):
        counts = await step_counts(stack.temporal, key, places, asyncio.Semaphore(4))
        if all(passed == 1 for _, passed in counts.values()):
            break
        await asyncio.sleep(0.2)
    assert counts == {sid: (0, 1) for sid in places}


async def test_each_limit_is_refused_in_short(stack: Stack) -> None:
    too_many = split_chain("limit-too-many", MAX_STEPS + 1)
    cases: list[tuple[dict[str, Any], str]] = [
        (too_many, f"at most {MAX_STEPS}"),
        # Before: 950 steps answered 500 (RecursionError in the loop check).
        (split_chain("limit-950", 950), f"at most {MAX_STEPS}"),
        (
            branch_journey("limit-deep", nested_condition(MAX_CONDITION_DEPTH + 2)),
            f"at most {MAX_CONDITION_DEPTH}",
        ),
        # Before: 300 levels took 5 s and answered 16 MB; 200 published, and every
        # participant's first workflow task then failed for ever.
        (branch_journey("limit-300", nested_condition(300)), f"{MAX_JSON_DEPTH} levels"),
        (branch_journey("limit-200", nested_condition(200)), f"{MAX_JSON_DEPTH} levels"),
    ]
    for body, named in cases:
        started = time.monotonic()
        response = await stack.http.post("/journeys", json=body)
        elapsed = time.monotonic() - started
        assert response.status_code == 422, (body["key"], response.text[:500])
        assert response.headers["content-type"] == "application/json"
        assert len(response.content) < 10_000, body["key"]
        assert any(named in problem["msg"] for problem in response.json()["detail"]), (
            body["key"],
            response.text[:500],
        )
        assert elapsed < 5, f"{body['key']}: {elapsed:.1f}s"  # a hang, not a speed target
        missing = await stack.http.get(f"/journeys/{body['key']}")
        assert missing.status_code == 404, "nothing was stored"
    # The deepest definition allowed publishes, and a participant runs through it (the
    # issue's 200 levels published, and every run's first workflow task failed).
    await publish(stack.http, deepest_journey("limit-deepest"))
    contact = await create_contact(stack.http)
    await enrol(stack.http, "limit-deepest", contact)
    view = await wait_until_done(stack.http, "limit-deepest", contact)
    assert view["status"] == "completed", view
    assert [visit["step"] for visit in view["history"]] == ["check", "done"]


async def test_follow_ups_nest_only_so_deep(stack: Stack) -> None:
    def message(level: int) -> dict[str, Any]:
        step: dict[str, Any] = {**mail(f"level {level}"), "next": "end"}
        if level < MAX_FOLLOW_UP_DEPTH + 1:
            step["follow_ups"] = [
                {
                    "key": f"f{level}",
                    "on": "sent",
                    "start": "m",
                    "steps": {"m": message(level + 1), "end": {"type": "end"}},
                }
            ]
        return step

    body = journey("limit-nested", steps={"m": message(0), "end": {"type": "end"}}, start="m")
    response = await stack.http.post("/journeys", json=body)
    assert response.status_code == 422, response.text[:500]
    assert f"at most {MAX_FOLLOW_UP_DEPTH}" in json.dumps(response.json())


async def test_a_terminated_run_says_so_with_its_reason(stack: Stack) -> None:
    key = "limit-terminated"
    await publish(
        stack.http,
        journey(key, steps={"pause": {**wait("P1D"), "next": "done"}, "done": {"type": "end"}}),
    )
    contact = await create_contact(stack.http)
    await enrol(stack.http, key, contact)
    handle = stack.temporal.get_workflow_handle(journey_workflow_id(key, contact))
    await handle.terminate(reason="wrong audience, stopped by the operator")

    async def terminated_lines() -> list[dict[str, Any]]:
        response = await stack.http.get(f"/contacts/{contact}/dossier")
        assert response.status_code == 200, response.text
        return [e for e in response.json()["entries"] if e["kind"] == "journey_terminated"]

    # The dossier notices it by itself (visibility may take a moment to list the run).
    for _ in range(50):
        if lines := await terminated_lines():
            break
        await asyncio.sleep(0.1)
    assert len(lines) == 1
    assert lines[0]["journey"] == key
    assert lines[0]["title"] == (
        f"Terminated in journey {key}: wrong audience, stopped by the operator"
    )
    view = await participant(stack.http, key, contact)
    assert view["status"] == "terminated"
    assert view["reason"] == "wrong audience, stopped by the operator"
    assert view["details"] is None, "no longer waiting"
    # Read again, by either way: still one line.
    assert len(await terminated_lines()) == 1
    # The console counts it apart, and the participant's page says why.
    browser = await signed_in(stack, API_KEY)
    try:
        counts = await eventually(
            lambda: browser.get(f"/console/journeys/{key}/counts.json"),
            lambda answer: answer.json()["summary"]["terminated"] == 1,
        )
        assert counts.json()["summary"]["removed"] == 0
        page = said(await browser.get(f"/console/journeys/{key}"))
        line = re.search(r'<li class="bad" data-shown-when-counted([^>]*)>.*?</li>', page)
        assert line is not None, page
        assert "hidden" not in line.group(1), line.group(0)
        shown = re.sub(r"<[^>]+>", "", line.group(0))
        assert shown == "1 terminated from outside"
        listed = said(await browser.get(f"/console/journeys/{key}?status=terminated"))
        assert "Participants whose run is terminated" in listed
        mine = said(await browser.get(f"/console/journeys/{key}/participants/{contact}"))
        assert "terminated" in mine and "wrong audience, stopped by the operator" in mine
    finally:
        await browser.aclose()


async def test_a_reset_is_no_end_of_the_participant(stack: Stack) -> None:
    """A reset terminates the run it replaces: the dossier says nothing of it."""
    key = "limit-reset"
    await publish(
        stack.http,
        journey(key, steps={"pause": {**wait("P1D"), "next": "done"}, "done": {"type": "end"}}),
    )
    contact = await create_contact(stack.http)
    await enrol(stack.http, key, contact)
    await wait_for_step(stack.http, key, contact, "pause")  # a task to reset to
    workflow_id = journey_workflow_id(key, contact)
    [outcome] = await ops.reset_runs(
        stack.temporal, f"WorkflowId = '{workflow_id}'", "first", reason="try again"
    )
    assert outcome.new_run_id, outcome
    response = await stack.http.get(f"/contacts/{contact}/dossier")
    kinds = [entry["kind"] for entry in response.json()["entries"]]
    assert "journey_terminated" not in kinds, kinds
    assert (await participant(stack.http, key, contact))["status"] == "running"


async def test_a_large_publish_does_not_hold_the_api(stack: Stack) -> None:
    """Before: 190 mails of templates (980 kB, 30,000 expressions) took 8 s to check on
    the event loop, and /healthz waited all that time. The checks run in a process of
    their own now. Measured as the lag of the API's own event loop (in a thread of its
    own here, as in its own process); the bound catches a hold, the figures are in the
    README's Performance section."""
    ids = [f"m{i:03d}" + "x" * 60 for i in range(190)]
    steps: dict[str, Any] = {
        sid: {
            "type": "send_email",
            "subject": "Hi {{ contact.first_name }}",
            "html": "<p>{{ contact.first_name }}</p>" + "<p>text {{ contact.plan }}</p>" * 160,
            "next": after,
        }
        for sid, after in zip(ids, [*ids[1:], "end"], strict=True)
    }
    steps["end"] = {"type": "end"}
    # Encoded before the probe starts: the test's own encoding would hold the GIL.
    body = json.dumps(journey("limit-large", steps=steps, start=ids[0])).encode()
    lags: list[float] = []

    async with api_served(stack.settings, thread=True) as served:
        assert served.loop is not None

        async def probe(loop: asyncio.AbstractEventLoop) -> None:
            while True:
                lags.append(await loop_lag(loop))
                await asyncio.sleep(0.01)

        probing = asyncio.create_task(probe(served.loop))
        try:
            response = await served.http.post(
                "/journeys", content=body, headers={"Content-Type": "application/json"}
            )
        finally:
            probing.cancel()
            await asyncio.gather(probing, return_exceptions=True)
    assert response.status_code == 201, response.text[:500]
    assert len(lags) > 10, "the probe ran while the publish did"
    assert max(lags) < 2, f"the API's loop was held {max(lags):.2f} s"


async def test_a_step_of_an_unknown_kind_or_field_is_named_with_what_is_allowed(
    stack: Stack,
) -> None:
    """Before: pydantic's words ("Input tag 'send_fax' found using 'type' does not
    match any of the expected tags: …"), with no step id in the message."""
    body = journey(
        "limit-kinds",
        steps={
            "fax": {"type": "send_fax", "next": "done"},
            "hello": {**mail("Hi"), "sendr": "shop@example.com", "next": "done"},
            "pause": {"type": "wait", "next": "done", "duraton": "P1D"},
            "nothing": {"next": "done"},
            "done": {"type": "end"},
        },
        start="fax",
    )
    response = await stack.http.post("/journeys", json=body)
    assert response.status_code == 422
    messages = {tuple(p["loc"]): p["msg"] for p in response.json()["detail"]}
    assert messages[("body", "steps", "fax")].startswith(
        "step 'fax': there is no step type 'send_fax'; the types are send_email, wait,"
    )
    assert messages[("body", "steps", "hello", "send_email", "sendr")].startswith(
        "step 'hello': a send_email step has no field 'sendr'; its fields are title, "
    )
    assert "sender" in messages[("body", "steps", "hello", "send_email", "sendr")]
    assert messages[("body", "steps", "pause", "wait", "duraton")].startswith(
        "step 'pause': a wait step has no field 'duraton'"
    )
    assert messages[("body", "steps", "nothing")].startswith("step 'nothing': give its 'type'")


async def test_any_body_nested_too_deep_is_refused_without_an_echo(stack: Stack) -> None:
    deep: Any = "x"
    for _ in range(MAX_JSON_DEPTH + 5):
        deep = [deep]
    response = await stack.http.post("/contacts", json={"fields": {"notes": deep}})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][:3] == ["body", "fields", "notes"]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in problem["msg"]
    # A long input is not echoed back in the 422.
    long_subject = {**mail("x" * 5000), "next": "done"}
    body = journey("limit-echo", steps={"m": long_subject, "done": {"type": "end"}}, start="m")
    response = await stack.http.post("/journeys", json=body)
    assert response.status_code == 422
    assert len(response.content) < 2000, response.text[:300]
    assert "at most 998 characters" in response.text


async def test_a_deep_body_on_a_route_without_one_is_a_422(stack: Stack) -> None:
    """Before: a 500 with a traceback (RecursionError in the depth check)."""
    deep = "[" * 100_000 + "]" * 100_000
    response = await stack.http.post(
        "/campaigns/none/actions/none/generate",
        content=deep,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]
    assert "nests deeper than" in response.json()["detail"][0]["msg"]


async def test_the_console_refuses_a_deep_definition_in_short(stack: Stack) -> None:
    """Before: 2.9 s and a 22 MB page listing 4,837 problems."""
    browser = await signed_in(stack, API_KEY)
    try:
        form = await browser.get("/console/publish")
        token = csrf_of(form.text)
        body = json.dumps(branch_journey("limit-console", nested_condition(300)))
        response = await browser.post(
            "/console/publish", data={"definition": body, "csrf": token, "action": "check"}
        )
    finally:
        await browser.aclose()
    assert response.status_code == 422
    assert len(response.content) < 100_000
    assert f"nests deeper than {MAX_JSON_DEPTH} levels" in said(response)


def test_the_checking_process_ends_with_the_api_process() -> None:
    """Before: an API process killed outright left its checking process behind for ever
    (a pool's worker holds both ends of its task queue)."""
    script = """
import asyncio
import journeys.publishing as publishing
from journeys.definition import JourneyDefinition

definition = JourneyDefinition.model_validate(
    {"key": "k", "name": "K", "entry": {"type": "api"}, "start": "done",
     "steps": {"done": {"type": "end"}}}
)

async def main() -> None:
    assert await publishing._checked_apart(definition) == []
    print(*publishing._checker._processes, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert psutil.pid_exists(child)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(50):
        if not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the checking process {child} outlived its parent")
