"""What every handler shares: the participant it works on and activity options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from journeys.models import JourneyInput, JourneyState

# Provider outages are retried for as long as they last, at most every 5 minutes;
# activities raise non-retryable errors for bad input.
ACTIVITY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=5)),
}
# A send heartbeats while it lasts longer than a couple of seconds (a slow relay,
# marking it sent through a PostgreSQL restart), so a crashed worker's send is
# retried after the heartbeat timeout rather than a long start-to-close timeout.
SEND_OPTIONS: dict[str, Any] = {
    **ACTIVITY_OPTIONS,
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=10),
}


class Participant(Protocol):
    """The running journey as a handler sees it (`workflows.journey.JourneyWorkflow`)."""

    input: JourneyInput
    state: JourneyState

    def describe(self, details: str) -> None: ...
    def record_outcome(self, outcome: str) -> None: ...
    def links_match(self, clicked: str | None, wanted: str) -> bool: ...
    async def check_leave(self, step_id: str, when: str) -> None: ...
    async def pause(
        self, timeout: timedelta, summary: str, done: Callable[[], bool] | None = None
    ) -> bool: ...


class Left(Exception):
    """The participant leaves the journey before its end: exited or removed."""

    def __init__(self, status: Literal["exited", "removed"], reason: str) -> None:
        super().__init__(reason)
        self.status: Literal["exited", "removed"] = status
        self.reason = reason


def visit_key(p: Participant, step_id: str) -> str:
    """The idempotency key of this visit of the step (its send, its profile change):
    stable across retries, replays and continue-as-new; new for each visit of the
    step and for a re-entry."""
    occurrence = p.state.occurrences.get(step_id, 0) + 1
    p.state.occurrences[step_id] = occurrence
    info = workflow.info()
    return f"{info.workflow_id}/{info.first_execution_run_id}/{step_id}/{occurrence}"
