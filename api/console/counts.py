"""Counts from Temporal visibility: how many runs of a journey are in each state, at
each step, and how many went through it.

Visibility counts only group by ExecutionStatus, so a count per step is a query per
step; they go out together (at most `CONCURRENT_COUNTS` at a time in an API process:
the caller passes the one semaphore, `Freshness.limit`). A journey's own
runs are those without `JourneyFollowUp`; executions closed by continue-as-new are
left out, their continuation is counted instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionCount

from journeys.models import (
    SA_FOLLOW_UP,
    SA_JOURNEY,
    SA_MESSAGE_STEP,
    SA_STATUS,
    SA_STEP,
    SA_STEPS_TAKEN,
    step_taken_values,
)
from journeys.outages import bounded
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT

CONCURRENT_COUNTS = 16


@dataclass(frozen=True)
class JourneyCounts:
    running: int = 0
    completed: int = 0
    exited: int = 0
    removed: int = 0  # removed (or canceled), or skipped by run_if
    failed: int = 0
    terminated: int = 0  # from outside: an operator, or Temporal itself

    @property
    def total(self) -> int:
        return (
            self.running + self.completed + self.exited + self.removed + self.failed
        ) + self.terminated


def _quote(value: str) -> str:
    # Keys and step ids are restricted to [A-Za-z0-9_-] by the definition format;
    # quoting anyway keeps a query from ever being built out of a stray quote.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def journey_runs(key: str) -> str:
    return f"{SA_JOURNEY} = {_quote(key)} AND {SA_FOLLOW_UP} IS NULL"


# Each outcome in visibility terms: a journey run that ends by exiting, by removal or
# skipped by run_if completes as a workflow, with `JourneyStatus` saying which. The
# summary's counts and the listings by outcome use these same words.
_ENDED_OTHERWISE = "('exited', 'removed', 'skipped')"
_REMOVED_BY_THE_RUN = f"ExecutionStatus = 'Completed' AND {SA_STATUS} IN ('removed', 'skipped')"
OUTCOMES = {
    "running": "ExecutionStatus = 'Running'",
    "completed": f"ExecutionStatus = 'Completed' AND {SA_STATUS} NOT IN {_ENDED_OTHERWISE}",
    "exited": f"ExecutionStatus = 'Completed' AND {SA_STATUS} = 'exited'",
    "removed": f"(ExecutionStatus = 'Canceled' OR ({_REMOVED_BY_THE_RUN}))",
    "failed": "ExecutionStatus IN ('Failed', 'TimedOut')",
    "terminated": "ExecutionStatus = 'Terminated'",
}


async def _counted(client: Client, query: str, limit: asyncio.Semaphore) -> WorkflowExecutionCount:
    async with limit:
        return await bounded(
            "Temporal",
            client.count_workflows(query, rpc_timeout=API_RPC_TIMEOUT),
            API_CALL_SECONDS,
        )


async def _count(client: Client, query: str, limit: asyncio.Semaphore) -> int:
    return (await _counted(client, query, limit)).count


async def _gather(counts: Iterable[Awaitable[int]]) -> list[int]:
    return list(await asyncio.gather(*counts))


async def journey_counts(client: Client, key: str, limit: asyncio.Semaphore) -> JourneyCounts:
    """The journey's runs by outcome: three counts (one grouped by ExecutionStatus)."""
    runs = journey_runs(key)
    by_status = await _counted(client, f"{runs} GROUP BY ExecutionStatus", limit)
    exited, removed = await _gather(
        [
            _count(client, f"{runs} AND {OUTCOMES['exited']}", limit),
            _count(client, f"{runs} AND {_REMOVED_BY_THE_RUN}", limit),
        ]
    )
    groups = {str(group.group_values[0]): group.count for group in by_status.groups}
    return JourneyCounts(
        running=groups.get("Running", 0),
        completed=groups.get("Completed", 0) - exited - removed,
        exited=exited,
        removed=removed + groups.get("Canceled", 0),
        failed=groups.get("Failed", 0) + groups.get("TimedOut", 0),
        terminated=groups.get("Terminated", 0),
    )


@dataclass(frozen=True)
class StepPlace:
    """Where a node of the graph is in visibility: the journey's own runs (no
    follow-up), or the runs of one follow-up of one message step."""

    step: str
    follow_up: str | None = None
    message_step: str | None = None


async def step_counts(
    client: Client, key: str, places: dict[str, StepPlace], limit: asyncio.Semaphore
) -> dict[str, tuple[int, int]]:
    """(here now, went through) of each node: running at the step; and runs that were
    at it and moved on, or completed there (an end step). A run removed, failed or
    skipped at a step did not go through it."""

    def runs_of(place: StepPlace) -> str:
        if place.follow_up is None:
            return journey_runs(key)
        return (
            f"{SA_JOURNEY} = {_quote(key)} AND {SA_FOLLOW_UP} = {_quote(place.follow_up)}"
            f" AND {SA_MESSAGE_STEP} = {_quote(place.message_step or '')}"
        )

    async def one(place: StepPlace) -> tuple[int, int]:
        runs, step = runs_of(place), _quote(place.step)
        # By id, or by token in a run whose ids did not fit the attribute.
        taken = "(" + ", ".join(map(_quote, step_taken_values(place.step))) + ")"
        here, passed = await _gather(
            [
                _count(
                    client,
                    f"{runs} AND ExecutionStatus = 'Running' AND {SA_STEP} = {step}",
                    limit,
                ),
                _count(
                    client,
                    f"{runs} AND ExecutionStatus != 'ContinuedAsNew'"
                    f" AND {SA_STEPS_TAKEN} IN {taken}"
                    f" AND ({SA_STEP} != {step} OR {SA_STATUS} = 'completed')",
                    limit,
                ),
            ]
        )
        return here, passed

    found = await asyncio.gather(*(one(place) for place in places.values()))
    return dict(zip(places, found, strict=True))


async def fired_counts(
    client: Client, key: str, follow_ups: dict[str, tuple[str, str]], limit: asyncio.Semaphore
) -> dict[str, int]:
    """How often each follow-up fired: node id -> (message step path, follow-up key)."""
    found = await _gather(
        _count(
            client,
            f"{SA_JOURNEY} = {_quote(key)} AND {SA_FOLLOW_UP} = {_quote(rule)}"
            f" AND {SA_MESSAGE_STEP} = {_quote(path)} AND ExecutionStatus != 'ContinuedAsNew'",
            limit,
        )
        for path, rule in follow_ups.values()
    )
    return dict(zip(follow_ups, found, strict=True))
