"""Faults around real traffic, counted where a user would count: at the SMTP server and in
the `messages` table. N participants each get two mails (JOURNEYS_FAULT_N, 200 by
default); the stack and the scenarios are in bench/faults.py, which the fault bench
runs with N=1000.

Then schemathesis over the OpenAPI document the running API serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bench.faults import (
    ANSWER_WITHIN,
    DUPLICATES_PER_KILL,
    LANDING,
    FaultStack,
    Outcome,
    bulk_enrol_worker_sigkill,
    clicks_postgres_down,
    clicks_temporal_down,
    enrol_postgres_down,
    generate_worker_sigkill,
    postgres_restart,
    recurring_worker_sigkill,
    smtp_down,
    temporal_restart,
    worker_sigkill,
)
from journeys.devstack import find_binary

# A send takes well under a second; the 60 s start-to-close timeout made every send in
# flight at a worker crash wait a minute. Half a minute includes the new worker's start.
INTERRUPTED_SENDS_RESUME_WITHIN = 30.0
SCHEMATHESIS_EXAMPLES_ENV = "JOURNEYS_SCHEMATHESIS_EXAMPLES"
# Where the hooks (schemathesis_hooks.py) note each 422 they accept.
DROPPED_ENV = "JOURNEYS_SCHEMATHESIS_DROPPED"


def figures(o: Outcome) -> str:
    return (
        f"{o.scenario}: expected {o.expected}, received {o.received}, lost {o.lost}, "
        f"duplicates {o.duplicates}, completed {o.completed}/{o.n}, rows {o.statuses}, "
        f"{o.received_at_fault} received at the fault, outage {o.outage_seconds} s, "
        f"recovery {o.recovery_seconds} s, interrupted sends resumed {o.resumed_seconds} s"
    )


def assert_all_delivered(o: Outcome) -> None:
    """Every participant completed, and every expected mail reached the server and is
    recorded as sent."""
    print(figures(o))
    assert o.lost == 0, figures(o)
    assert o.completed == o.n, figures(o)
    assert o.statuses == {"sent": o.expected}, figures(o)


def assert_answers_503(o: Outcome) -> None:
    """During the outage the API answered every call, in time, and never with a server
    error other than 503; a 503 says in JSON that the service is unavailable, and when to
    retry."""
    answers = [(p.request, p.status, round(p.seconds, 1), p.retry_after) for p in o.probes]
    print(f"{o.scenario} API answers during the outage: {answers}")
    statuses = [p.status for p in o.probes]
    assert None not in statuses, answers
    assert [s for s in statuses if s is not None and s >= 500 and s != 503] == [], answers
    assert 503 in statuses, answers
    unavailable = [p for p in o.probes if p.status == 503]
    assert all(p.retry_after and p.json_body for p in unavailable), answers
    assert all(p.seconds <= ANSWER_WITHIN for p in o.probes), answers


async def test_worker_sigkill_mid_send(faults: FaultStack) -> None:
    o = await worker_sigkill(faults)
    assert 0 < o.received_at_fault < faults.n, "the kill came before or after the first mails"
    assert_all_delivered(o)
    # Only SMTP transactions in flight at the kill can be repeated: one per connection.
    assert o.duplicates <= DUPLICATES_PER_KILL, figures(o)
    assert o.resumed_seconds is not None, figures(o)
    assert o.resumed_seconds < INTERRUPTED_SENDS_RESUME_WITHIN, figures(o)


async def test_smtp_down_30s(faults: FaultStack) -> None:
    o = await smtp_down(faults)
    assert 0 < o.received_at_fault < o.expected, "the outage came before or after the sends"
    assert_all_delivered(o)
    assert o.duplicates == 0, figures(o)


async def test_postgres_restart_mid_send(faults: FaultStack) -> None:
    o = await postgres_restart(faults)
    assert 0 < o.received_at_fault < o.expected, "the restart came before or after the sends"
    assert_all_delivered(o)
    # A send whose row could not be marked sent is repeated; at most one per connection.
    assert o.duplicates <= DUPLICATES_PER_KILL, figures(o)
    assert_answers_503(o)


async def test_temporal_restart_while_participants_sleep(faults: FaultStack) -> None:
    o = await temporal_restart(faults)
    assert o.received_at_fault == faults.n, "not every participant was asleep at the restart"
    assert_all_delivered(o)
    assert o.duplicates == 0, figures(o)
    assert_answers_503(o)


def assert_clicks_redirected(o: Outcome, n: int) -> None:
    """Every reader who clicked got the page the link leads to, in time."""
    answers = [(p.status, p.location, round(p.seconds, 2)) for p in o.probes]
    assert len(o.probes) == n, answers
    assert {(p.status, p.location) for p in o.probes} == {(302, LANDING)}, answers
    assert all(p.seconds <= ANSWER_WITHIN for p in o.probes), answers


@pytest.mark.parametrize(
    "scenario", [clicks_temporal_down, clicks_postgres_down], ids=["temporal", "postgres"]
)
async def test_clicks_during_an_outage_reach_their_journeys(
    faults: FaultStack, scenario: Callable[[FaultStack], Awaitable[Outcome]]
) -> None:
    o = await scenario(faults)
    assert o.received_at_fault == faults.n, figures(o)
    assert_clicks_redirected(o, faults.n)
    # The second mail goes only to those whose click reached the journey.
    assert_all_delivered(o)
    assert o.duplicates == 0, figures(o)


async def test_postgres_down_during_an_enrolment_then_the_call_again(faults: FaultStack) -> None:
    """The enrolment is recorded before any run starts: the call interrupted by the outage
    answers 503, and the same call afterwards finishes it without a second run."""
    o = await enrol_postgres_down(faults)
    answers = [(p.status, round(p.seconds, 1)) for p in o.probes]
    print(f"{o.scenario} enrolment answers: {answers}")
    assert 0 < o.received_at_fault < o.expected, figures(o)
    assert [p.status for p in o.probes] == [503, 200], answers
    assert_all_delivered(o)
    assert o.duplicates == 0, figures(o)
    for contact_id in faults.contacts[:: max(1, faults.n // 10)]:
        view = await faults.http.get(f"/journeys/{o.journey_key}/participants/{contact_id}")
        assert view.status_code == 200, view.text
        assert view.json()["status"] == "completed", view.text


async def test_worker_sigkill_during_a_bulk_enrolment(faults: FaultStack) -> None:
    """The operation's activity dies with the worker mid-page; the next worker resumes it
    from the heartbeat and enrols every member once."""
    o = await bulk_enrol_worker_sigkill(faults)
    assert 0 < o.received_at_fault < o.expected, figures(o)
    assert_all_delivered(o)
    assert o.duplicates <= DUPLICATES_PER_KILL, figures(o)
    assert o.operation is not None
    assert o.operation["status"] == "completed", o.operation
    assert (o.operation["total"], o.operation["done"]) == (faults.n, faults.n), o.operation
    assert o.operation["counts"] == {"enrolled": faults.n}, o.operation
    assert o.operation["paging_attempts"] >= 2, "the kill did not interrupt the paging"


async def test_worker_sigkill_during_a_campaign_generation(faults: FaultStack) -> None:
    """The generation's activity dies with the worker mid-page; the next worker resumes
    it: a record and a mail for every contact, none twice but for sends in flight."""
    o = await generate_worker_sigkill(faults)
    assert 0 < o.received_at_fault < o.expected, figures(o)
    assert_all_delivered(o)
    assert o.duplicates <= DUPLICATES_PER_KILL, figures(o)
    assert o.operation is not None
    assert o.operation["status"] == "completed", o.operation
    assert o.operation["counts"] == {"records": faults.n, "sent": faults.n}, o.operation
    assert o.operation["records"] == faults.n, o.operation
    assert o.operation["paging_attempts"] >= 2, "the kill did not interrupt the generation"


async def test_worker_sigkill_during_a_recurring_run(faults: FaultStack) -> None:
    """A recurring run's sending activity dies with the worker mid-page; the next worker
    resumes it from the heartbeat: every recipient mailed, none twice but for sends in
    flight, and the run's counts say so."""
    o = await recurring_worker_sigkill(faults)
    assert 0 < o.received_at_fault < o.expected, figures(o)
    assert_all_delivered(o)
    assert o.duplicates <= DUPLICATES_PER_KILL, figures(o)
    assert o.operation is not None
    assert o.operation["status"] == "completed", o.operation
    counts = o.operation["counts"]
    assert (counts["found"], counts["sent"], counts["failed"]) == (faults.n, faults.n, 0), counts
    assert o.operation["paging_attempts"] >= 2, "the kill did not interrupt the run"


# What schemathesis checks, over every operation: no server error (a 503 would be an
# outage, and there is none here); every status answered is documented; every answer
# fits the schema documented for its status; and a request that fits the document gets
# no 4xx but 401, 403, 404, 409 and 429, unless a problem of its 422 is of a type JSON
# Schema cannot state (`api.errors.BEYOND_SCHEMA`: the hooks drop those, and only those).
CHECKS = (
    "not_a_server_error,status_code_conformance,"
    "positive_data_acceptance,response_schema_conformance"
)
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# The coverage phase enumerates boundary and negative cases of every property. These
# bodies hold the definition format's recursive schemas (a journey; a selection's query
# of nested all/any/not conditions; a mail message's follow-ups, each with its own
# steps), with hundreds of properties: on two cores the phase took 200 s for POST
# /selections and over a minute for each message, 8 minutes for POST /journeys. The
# definition's shapes are checked property by property in tests/test_definition.py and
# tests/test_followups.py; here these get the random phases (examples, fuzzing), every
# check all the same.
DEEP_BODIES = [
    "publish_journey_journeys_post",  # operationIds: POST /journeys
    "create_selections_post",
    "create_action_campaigns__key__actions_post",
    "create_recurring_send_recurring_sends_post",
    "change_recurring_send_recurring_sends__key__patch",
]
# POST /ops/replay and /ops/reset act on every run that matches: the hooks hold each
# call to a journey that names no run (and a reset to a dry run); tests/test_ops.py and
# tests/test_ops_mending.py check what they do to a real selection.


async def _schemathesis(
    faults: FaultStack, where: Path, selection: list[str], phases: str
) -> tuple[list[str], str]:
    """Run schemathesis over the served document; its failures and its output."""
    where.mkdir(parents=True, exist_ok=True)
    report = where / "schemathesis.xml"
    examples = os.environ.get(SCHEMATHESIS_EXAMPLES_ENV, "25")
    run = await asyncio.create_subprocess_exec(
        find_binary("schemathesis"),
        "run",
        f"{faults.stack.api_url}/openapi.json",
        *selection,
        "--phases",
        phases,
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {faults.stack.api_key}",
        "--max-examples",
        examples,
        "--request-timeout",
        "20",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=where,  # where it keeps its own files (.schemathesis, .hypothesis)
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            DROPPED_ENV: str(where / "dropped.jsonl"),
        },
    )
    output = (await run.communicate())[0].decode(errors="replace")
    assert report.exists(), output[-3000:]
    return schemathesis_failures(report), output


def dropped(where: Path) -> Counter[tuple[str, str]]:
    """The 422s the hooks accepted, by operation and problem types."""
    found: Counter[tuple[str, str]] = Counter()
    for run in where.glob("*/dropped.jsonl"):
        for line in run.read_text().splitlines():
            entry = json.loads(line)
            found[(entry["operation"], ",".join(entry["types"]))] += 1
    return found


async def test_api_matches_its_openapi_document(faults: FaultStack, tmp_path: Path) -> None:
    """schemathesis over every operation of the served document (`CHECKS`)."""
    started = time.monotonic()
    try:
        runs = [
            await _schemathesis(
                faults,
                tmp_path / "rest",
                [arg for op in DEEP_BODIES for arg in ("--exclude-operation-id", op)],
                "examples,coverage,fuzzing,stateful",
            ),
            await _schemathesis(
                faults,
                tmp_path / "deep",
                [arg for op in DEEP_BODIES for arg in ("--include-operation-id", op)],
                "examples,fuzzing",
            ),
        ]
    finally:
        # A frequency cap the fuzzing left would hold back the mails of what runs next.
        for channel in ("email", "sms"):
            await faults.http.delete(f"/frequency-caps/{channel}")
    failures = [line for found, _ in runs for line in found]
    seeds = [m.group(1) for _, output in runs if (m := re.search(r"Seed: (\d+)", output))]
    print(f"schemathesis: {time.monotonic() - started:.0f} s")
    for (operation, kinds), n in sorted(dropped(tmp_path).items()):
        print(f"accepted 422 ({kinds}): {operation} x{n}")
    print("\n".join(failures) or "schemathesis: no failures")
    assert failures == [], (
        f"{len(failures)} failures (rerun with --seed {', '.join(seeds) or '?'}):\n"
        + "\n".join(failures)
    )


def schemathesis_failures(junit: Path) -> list[str]:
    """One line per failure: operation, check, status, the request as curl."""
    lines = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for failure in case.iter("failure"):
            text = failure.text or ""
            found = re.search(r"^\[(\d{3})\]", text, re.MULTILINE)
            status = found.group(1) if found else "?"
            checks = re.findall(r"^- (ST\d+)", text, re.MULTILINE) or [failure.get("message")]
            if status == "503":  # "unavailable" is the API's documented answer to an outage
                checks = [c for c in checks if c != "ST101"]
            if not checks:
                continue
            curl = re.search(r"^\s*(curl .*)$", text, re.MULTILINE)
            lines.append(
                f"{case.get('name')}: {', '.join(map(str, checks))} status {status}: "
                + (curl.group(1) if curl else text.strip())[:500]
            )
    return lines
