"""Operations on runs for admins: failed and stuck participants, replaying their
histories on the deployed code, and resetting them in bulk (`journeys.ops`; the
CLI's `journeys ops` does the same with the code on the operator's disk)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator, BaseModel, Field
from temporalio.service import RPCError, RPCStatusCode

from api.deps import TemporalDep, require_admin
from api.errors import AUTH_RESPONSES, unprocessable, unprocessable_response
from api.outages import OUTAGE_RESPONSE
from journeys import ops
from journeys.definition.common import KEY_PATTERN, parse_duration
from journeys.outages import bounded
from journeys.schema import DURATION_OR_ZERO_SCHEMA, VISIBILITY_QUERY, Schema

router = APIRouter(
    prefix="/ops",
    tags=["operations on runs"],
    dependencies=[Depends(require_admin)],
    responses={
        **AUTH_RESPONSES,
        **OUTAGE_RESPONSE,
        422: unprocessable_response("a parameter, or the visibility query, is not valid (named)"),
    },
)

# Replaying or resetting thousands of runs takes a while; Temporal answering nothing
# at all for this long is an outage.
OPS_SECONDS = 300.0
API_LIMIT = 1000


def _duration(text: str) -> str:
    parse_duration(text, zero=True)  # a ValueError naming the text
    return text


Duration = Annotated[str, AfterValidator(_duration), Schema(DURATION_OR_ZERO_SCHEMA)]
StepId = Annotated[str, Query(pattern=ops.QUERY_VALUE.pattern)]
JourneyKey = Annotated[str, Query(pattern=KEY_PATTERN)]


class Run(BaseModel):
    workflow_id: str
    run_id: str
    journey: str | None
    participant: str | None = Field(description="the contact's id")
    step: str | None


class FailedRunView(Run):
    closed_at: datetime | None
    reason: str = Field(description="the step's failure, as the web UI shows it")


class StuckRunView(Run):
    problem: ops.StuckProblem = Field(
        description="retrying: an activity failing and retried; running: an activity at its"
        " first attempt, started and not done (it may heartbeat); workflow task failing: the"
        " run's workflow task fails again and again (a bug, a non-determinism, an input the"
        " code cannot read)"
    )
    activity: str | None = Field(description="the activity's type; null for a workflow task")
    attempt: int
    since: datetime = Field(
        description="since when: the activity's first schedule (retrying), its start"
        " (running), the workflow task's first failure"
    )
    last_error: str | None
    last_heartbeat: datetime | None = Field(description="a running activity's last heartbeat")
    reported_problems: list[str] = Field(
        description="Temporal's own flag on the run (TemporalReportedProblems), e.g."
        " category=WorkflowTaskFailed"
    )


async def _temporal(call: Any, where: str = "where") -> Any:
    try:
        return await bounded("Temporal", call, OPS_SECONDS)
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise unprocessable([((where,), exc.message)], kind=VISIBILITY_QUERY) from None
        raise


def _since(since: str) -> datetime | None:
    """The moment `since` ago; None (no bound) when that is before the calendar's first
    day (P300000W: 500 years more than there are)."""
    try:
        return datetime.now(UTC) - parse_duration(since, zero=True)
    except OverflowError:
        return None


@router.get("/failed", response_model=list[FailedRunView])
async def failed(
    client: TemporalDep,
    journey: JourneyKey | None = None,
    step: StepId | None = None,
    since: Annotated[Duration | None, Query(description="e.g. P1D: closed since")] = None,
) -> list[ops.FailedRun]:
    """Participants whose run failed: the step and why; and run_script calls that failed
    for good (their `script/…` workflow), with the journey, step and participant."""
    after = _since(since) if since else None
    found: list[ops.FailedRun] = await _temporal(
        ops.failed_runs(client, journey=journey, step=step, since=after, limit=API_LIMIT)
    )
    return found


@router.get("/stuck", response_model=list[StuckRunView])
async def stuck(
    client: TemporalDep,
    journey: JourneyKey | None = None,
    step: StepId | None = None,
    older_than: Annotated[
        Duration,
        Query(description="not moved for longer than this (an activity, a workflow task)"),
    ] = "PT10M",
) -> list[ops.StuckRun]:
    """Running participants that have not moved for longer than `older_than`: an
    activity retrying, or running at its first attempt without end, or the run's
    workflow task failing again and again. Which, since when, the last error."""
    found: list[ops.StuckRun] = await _temporal(
        ops.stuck_runs(
            client,
            now=datetime.now(UTC),
            older_than=parse_duration(older_than, zero=True),
            journey=journey,
            step=step,
            limit=API_LIMIT,
        )
    )
    return found


class Selection(BaseModel):
    journey: str | None = Field(default=None, pattern=KEY_PATTERN)
    step: str | None = Field(default=None, pattern=ops.QUERY_VALUE.pattern)
    where: str | None = Field(
        default=None,
        max_length=2000,
        description='a visibility query ANDed to the rest, e.g. `ExecutionStatus = "Failed"`',
    )

    def query(self) -> str:
        return ops.runs_query(journey=self.journey, step=self.step, where=self.where)


class ReplayOutcomeView(BaseModel):
    workflow_id: str
    run_id: str | None
    ok: bool
    error: str | None = Field(description="the non-determinism and where, when not ok")


class ReplayReport(BaseModel):
    replayed: int
    failed: int
    runs: list[ReplayOutcomeView]


@router.post("/replay", response_model=ReplayReport)
async def replay(body: Selection, client: TemporalDep) -> ReplayReport:
    """Replay the matching runs' histories on the code this API runs: a dry run before
    a deploy. Changes nothing."""
    from worker import WORKFLOWS

    outcomes: list[ops.ReplayOutcome] = await _temporal(
        ops.replay_runs(client, body.query(), WORKFLOWS, limit=API_LIMIT)
    )
    return ReplayReport(
        replayed=len(outcomes),
        failed=sum(not o.ok for o in outcomes),
        runs=[ReplayOutcomeView(**o.__dict__) for o in outcomes],
    )


# What `ops.check_reset_target` takes.
RESET_TARGET = f"^(?:last-good|first|step:{ops.QUERY_VALUE.pattern.strip('^$')})$"


def _target(to: str) -> str:
    return ops.check_reset_target(to)


class ResetRequest(Selection):
    to: Annotated[str, AfterValidator(_target), Schema({"pattern": RESET_TARGET})] = Field(
        description="last-good (before the failed or retrying activity), first, or step:<id>"
    )
    reason: str = Field(default="reset through the API", max_length=500)
    dry_run: bool = Field(default=False, description="find the reset points, reset nothing")


class ResetOutcomeView(BaseModel):
    workflow_id: str
    run_id: str
    outcome: Literal["reset", "skipped", "error"]
    detail: str
    new_run_id: str | None


class ResetReport(BaseModel):
    reset: int
    skipped: int
    errors: int
    runs: list[ResetOutcomeView]


@router.post("/reset", response_model=ResetReport)
async def reset(body: ResetRequest, client: TemporalDep) -> ResetReport:
    """Reset the matching runs (signals received after the reset point are applied
    again); mail sent before the reset point is not sent again."""
    outcomes: list[ops.ResetOutcome] = await _temporal(
        ops.reset_runs(
            client,
            body.query(),
            body.to,
            reason=body.reason,
            limit=API_LIMIT,
            dry_run=body.dry_run,
        )
    )
    return ResetReport(
        reset=sum(o.outcome == "reset" for o in outcomes),
        skipped=sum(o.outcome == "skipped" for o in outcomes),
        errors=sum(o.outcome == "error" for o in outcomes),
        runs=[ResetOutcomeView(**o.__dict__) for o in outcomes],
    )
