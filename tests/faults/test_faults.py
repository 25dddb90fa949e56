"""Faults around real traffic, counted where a user would count: at the SMTP server and in
the `messages` table. N participants each get two mails (JOURNEYS_FAULT_N, 200 by
default); the stack and the scenarios are in bench/faults.py, which the fault bench
runs with N=1000.

Then schemathesis over the OpenAPI document the running API serves.
"""

from __future__ import annotations

import asyncio
import os
import re
import xml.etree.ElementTree as ET
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


# The coverage phase enumerates boundary and negative cases of every property, and
# the journey definition has hundreds (each step kind, follow-ups, link actions,
# conditions): on two cores that phase alone took 8 minutes for POST /journeys. The
# definition's shapes are checked property by property in tests/test_definition.py
# and tests/test_followups.py; here POST /journeys gets the random phases only.
PUBLISH = "publish_journey_journeys_post"  # POST /journeys, by its operationId
# POST /ops/replay and /ops/reset act on every run of the stack, each call replaying or
# resetting thousands: too slow to fuzz here; tests/test_ops.py checks their answers.
ACTS_ON_ALL_RUNS = ["replay_ops_replay_post", "reset_ops_reset_post"]


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
        "not_a_server_error,status_code_conformance",
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
    )
    output = (await run.communicate())[0].decode(errors="replace")
    assert report.exists(), output[-3000:]
    return schemathesis_failures(report), output


async def test_api_matches_its_openapi_document(faults: FaultStack, tmp_path: Path) -> None:
    """schemathesis: no server error (a 503 would be an outage, and there is none here),
    and every status the API answers is documented for its operation."""
    try:
        runs = [
            await _schemathesis(
                faults,
                tmp_path / "rest",
                [
                    arg
                    for op in (PUBLISH, *ACTS_ON_ALL_RUNS)
                    for arg in ("--exclude-operation-id", op)
                ],
                "examples,coverage,fuzzing,stateful",
            ),
            await _schemathesis(
                faults,
                tmp_path / "publish",
                ["--include-operation-id", PUBLISH],
                "examples,fuzzing",
            ),
        ]
    finally:
        # A frequency cap the fuzzing left would hold back the mails of what runs next.
        for channel in ("email", "sms"):
            await faults.http.delete(f"/frequency-caps/{channel}")
    failures = [line for found, _ in runs for line in found]
    seeds = [m.group(1) for _, output in runs if (m := re.search(r"Seed: (\d+)", output))]
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
