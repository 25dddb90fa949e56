"""Operations on participants' runs: which failed, which are stuck, whether their
histories replay on the code at hand, and resetting many of them at once.

Everything here reads Temporal: visibility finds the runs (by the search
attributes every journey run carries, and Temporal's own `TemporalReportedProblems`),
`describe` shows a run's retrying or hanging activity and its failing workflow
task, and a run's history says where a reset goes back to. Only
`reset_runs` changes anything. The CLI (`journeys ops`) and the API (`/ops`)
both call these functions; the CLI with the code on the operator's disk, the API
with the code it was deployed with.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    PendingActivityState,
    ResetReapplyType,
    WorkerDeploymentVersionStatus,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ResetWorkflowExecutionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.client import WorkflowExecution as WorkflowExecutionListed
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from journeys.models import SA_JOURNEY, SA_PARTICIPANT, SA_STATUS, SA_STEP, ScriptCallInput

JOURNEY_WORKFLOW = "JourneyWorkflow"
JOURNEY_RUNS = f'WorkflowType = "{JOURNEY_WORKFLOW}"'
# A run_script call's own workflow (`script/<visit key>`): it carries no search
# attributes of the journey's, its input names the journey, the step and the contact.
SCRIPT_WORKFLOW = "ScriptCallWorkflow"
# Runs looked at by one call at most; narrow by journey or step for more.
LIMIT = 10_000
# A value put in a visibility query: journey keys and step ids are of this shape.
QUERY_VALUE = re.compile(r"^[A-Za-z0-9_.:/@-]{1,200}$")

_JOURNEY = SearchAttributeKey.for_keyword(SA_JOURNEY)
_PARTICIPANT = SearchAttributeKey.for_keyword(SA_PARTICIPANT)
_STEP = SearchAttributeKey.for_keyword(SA_STEP)
# Set by Temporal (server 1.30 on) on a run whose workflow tasks failed several times in
# a row (five by default: `system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute`),
# cleared when one succeeds: e.g. ["category=WorkflowTaskFailed",
# "cause=WorkflowTaskFailedCauseWorkflowWorkerUnhandledFailure"].
REPORTED_PROBLEMS = "TemporalReportedProblems"
_PROBLEMS = SearchAttributeKey.for_keyword_list(REPORTED_PROBLEMS)

Progress = Callable[[int, int | None], None]  # (done, total when known)


def _checked(name: str, value: str) -> str:
    if not QUERY_VALUE.fullmatch(value):
        raise ValueError(f"{name} {value!r}: letters, digits and _ . : / @ - only")
    return value


def _value(name: str, value: str) -> str:
    return f'"{_checked(name, value)}"'


def runs_query(
    *,
    journey: str | None = None,
    step: str | None = None,
    since: datetime | None = None,
    where: str | None = None,
    extra: str | None = None,
) -> str:
    """A visibility query for journey runs: of one journey, at one step, closed since,
    and an operator's own `where` clause (ANDed, in parentheses)."""
    parts = [JOURNEY_RUNS]
    if journey is not None:
        parts.append(f"{SA_JOURNEY} = {_value('journey', journey)}")
    if step is not None:
        parts.append(f"{SA_STEP} = {_value('step', step)}")
    if since is not None:
        parts.append(f'CloseTime >= "{since.isoformat()}"')
    if extra is not None:
        parts.append(extra)
    if where:
        parts.append(f"({where})")
    return " AND ".join(parts)


@dataclass
class RunRef:
    workflow_id: str
    run_id: str
    journey: str | None
    participant: str | None
    step: str | None


@dataclass
class FailedRun(RunRef):
    closed_at: datetime | None
    reason: str


StuckProblem = Literal["retrying", "running", "workflow task failing"]


@dataclass
class StuckRun(RunRef):
    """A running participant that has not moved for longer than the threshold:

    - `retrying`: an activity failing and retried (attempt 2 on), since its first
      schedule, with the last error;
    - `running`: an activity at its first attempt, started that long ago and not done
      (it may heartbeat: alive, not progressing);
    - `workflow task failing`: the run's workflow task fails (or times out) again and
      again, since the first failure (a bug, a non-determinism, an input the code cannot
      read); `activity` is None, `attempt` the workflow task's, `last_error` its failure.
    """

    problem: StuckProblem
    activity: str | None
    attempt: int
    since: datetime
    last_error: str | None
    last_heartbeat: datetime | None = None
    # Temporal's own flag on the run (`TemporalReportedProblems`), when it set one.
    reported_problems: list[str] = field(default_factory=list)


def _ref(ex: WorkflowExecutionListed) -> RunRef:
    sa = ex.typed_search_attributes
    return RunRef(ex.id, ex.run_id, sa.get(_JOURNEY), sa.get(_PARTICIPANT), sa.get(_STEP))


async def _listed(client: Client, query: str, limit: int) -> list[WorkflowExecutionListed]:
    return [ex async for ex in client.list_workflows(query, limit=limit)]


async def _reverse_events(client: Client, ref: RunRef) -> AsyncIterator[HistoryEvent]:
    """The run's history from its last event backwards, a page at a time."""
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=ref.workflow_id, run_id=ref.run_id),
                maximum_page_size=100,
                next_page_token=token,
            )
        )
        for event in page.history.events:
            yield event
        token = page.next_page_token
        if not token:
            return


async def _failure_of(client: Client, ref: RunRef) -> str:
    async for event in _reverse_events(client, ref):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = event.workflow_execution_failed_event_attributes.failure
            # The run's own message names the step and the activity's reason; the
            # causes below it repeat that, or add what a run from before says less.
            messages = [failure.message]
            while failure.HasField("cause"):
                failure = failure.cause
                said = failure.message
                if said and said != "Activity task failed" and not any(said in m for m in messages):
                    messages.append(said)
            return ": ".join(messages)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
            return "the run timed out"
    return "(no failure recorded)"


async def failed_runs(
    client: Client,
    *,
    journey: str | None = None,
    step: str | None = None,
    since: datetime | None = None,
    limit: int = LIMIT,
) -> list[FailedRun]:
    """Runs that ended failed: a step's activity failed for good (JourneyStatus
    `failed`), or the run failed before that status existed. With the step it failed
    at and the reason. Then the run_script calls that failed for good, each with the
    journey, step and participant of its input."""
    query = runs_query(
        journey=journey,
        step=step,
        since=since,
        extra=f'({SA_STATUS} = "failed" OR ExecutionStatus = "Failed")',
    )
    listed = await _listed(client, query, limit)

    async def failed(ex: WorkflowExecutionListed) -> FailedRun | None:
        if ex.workflow_type != JOURNEY_WORKFLOW:
            return None
        # A run that was reset (or re-entered) since is no longer the participant's.
        try:
            latest = await client.get_workflow_handle(ex.id).describe()
            if latest.run_id != ex.run_id:
                return None
            reason = await _failure_of(client, _ref(ex))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # gone since the listing (retention)
                return None
            raise
        return FailedRun(**_ref(ex).__dict__, closed_at=ex.close_time, reason=reason)

    runs = [run for run in await _bounded(listed, failed) if run is not None]
    scripts = await _failed_scripts(client, journey=journey, step=step, since=since, limit=limit)
    return runs + scripts


async def _failed_scripts(
    client: Client, *, journey: str | None, step: str | None, since: datetime | None, limit: int
) -> list[FailedRun]:
    parts = [f'WorkflowType = "{SCRIPT_WORKFLOW}"', 'ExecutionStatus = "Failed"']
    if journey is not None:
        # Narrowed by id (`script/<the run's id>/…`); the input says for sure.
        key = _checked("journey", journey)
        parts.append(
            f'(WorkflowId STARTS_WITH "script/journey/{key}/"'
            f' OR WorkflowId STARTS_WITH "script/followup/{key}/")'
        )
    if since is not None:
        parts.append(f'CloseTime >= "{since.isoformat()}"')
    listed = await _listed(client, " AND ".join(parts), limit)

    async def failed(ex: WorkflowExecutionListed) -> FailedRun | None:
        try:
            call = await _script_input(client, ex)
            if (journey is not None and call.journey_key != journey) or (
                step is not None and call.step != step
            ):
                return None
            ref = RunRef(ex.id, ex.run_id, call.journey_key, call.contact_id, call.step)
            reason = await _failure_of(client, ref)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # gone since the listing (retention)
                return None
            raise
        return FailedRun(**ref.__dict__, closed_at=ex.close_time, reason=reason)

    return [run for run in await _bounded(listed, failed) if run is not None]


async def _script_input(client: Client, ex: WorkflowExecutionListed) -> ScriptCallInput:
    """The call's input, from the first event of its history."""
    page = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=ex.id, run_id=ex.run_id),
            maximum_page_size=1,
        )
    )
    started = page.history.events[0].workflow_execution_started_event_attributes
    [call] = await client.data_converter.decode(started.input.payloads, [ScriptCallInput])
    assert isinstance(call, ScriptCallInput)
    return call


async def _stuck(
    client: Client,
    ex: WorkflowExecutionListed,
    now: datetime,
    older_than: timedelta,
) -> StuckRun | None:
    ref = _ref(ex)
    try:
        handle = client.get_workflow_handle(ref.workflow_id, run_id=ref.run_id)
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # gone since the listing
            return None
        raise
    raw = description.raw_description
    reported = list(description.typed_search_attributes.get(_PROBLEMS) or [])
    task = raw.pending_workflow_task
    if reported or (raw.HasField("pending_workflow_task") and task.attempt > 1):
        # Failed attempts of a workflow task after the first add no event: the last
        # failure in the history is where this run of failures began.
        since, error = await _task_failure(client, ref, now)
        if since is None:
            since = _time(task.original_scheduled_time, now) or description.start_time
        if since is not None and now - since >= older_than:
            return StuckRun(
                **ref.__dict__,
                problem="workflow task failing",
                activity=None,
                attempt=task.attempt,
                since=since,
                last_error=error,
                reported_problems=reported,
            )
    for pending in raw.pending_activities:
        if pending.attempt > 1:
            # Retries add no event: the activity's first schedule is its scheduled event.
            since = await _scheduled_at(client, ref, pending.activity_id, now)
            problem: StuckProblem = "retrying"
        elif pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            # Alive perhaps (heartbeating), but not done: a hang after the provider
            # answered, a call that never returns.
            since = _time(pending.last_started_time, now)
            problem = "running"
        else:
            continue
        if since is None or now - since < older_than:
            continue
        return StuckRun(
            **ref.__dict__,
            problem=problem,
            activity=pending.activity_type.name,
            attempt=pending.attempt,
            since=since,
            last_error=pending.last_failure.message or None,
            last_heartbeat=_time(pending.last_heartbeat_time, now),
            reported_problems=reported,
        )
    return None


def _time(stamp: Timestamp, now: datetime) -> datetime | None:
    """A protobuf time in `now`'s zone; None when it is not set."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=now.tzinfo)


async def _scheduled_at(
    client: Client, ref: RunRef, activity_id: str, now: datetime
) -> datetime | None:
    async for event in _reverse_events(client, ref):
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_id == activity_id
        ):
            return event.event_time.ToDatetime(tzinfo=now.tzinfo)
    return None


async def _task_failure(
    client: Client, ref: RunRef, now: datetime
) -> tuple[datetime | None, str | None]:
    """When the run's workflow task began to fail (its last recorded failure or timeout,
    after the last task that completed), and why."""
    async for event in _reverse_events(client, ref):
        if event.event_type == _WFT_COMPLETED:
            break
        at = event.event_time.ToDatetime(tzinfo=now.tzinfo)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = event.workflow_task_failed_event_attributes
            cause = (
                WorkflowTaskFailedCause.Name(attrs.cause)
                .removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
                .lower()
                .replace("_", " ")
            )
            return at, f"{attrs.failure.message or 'no message'} ({cause})"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            return at, "the workflow task timed out (no worker finished it in time)"
    return None, None


async def workflow_task_failure(client: Client, workflow_id: str, run_id: str) -> str | None:
    """Why the run's workflow task has been failing (its last failure since the last
    task that completed), or None."""
    ref = RunRef(workflow_id, run_id, None, None, None)
    return (await _task_failure(client, ref, datetime.now().astimezone()))[1]


async def stuck_runs(
    client: Client,
    *,
    now: datetime,
    older_than: timedelta,
    journey: str | None = None,
    step: str | None = None,
    limit: int = LIMIT,
    progress: Progress | None = None,
) -> list[StuckRun]:
    """Running participants that have not moved for longer than `older_than`: an
    activity retrying (a provider down, a bug that raises a retryable error) or running
    at its first attempt without end (a hang), or workflow tasks failing again and
    again (`StuckRun`). Runs Temporal flagged (`TemporalReportedProblems`) are looked
    at first, so that the limit never leaves them out."""
    query = runs_query(journey=journey, step=step, extra='ExecutionStatus = "Running"')
    try:
        flagged = await _listed(client, f"{query} AND {REPORTED_PROBLEMS} IS NOT NULL", limit)
    except RPCError as exc:
        if exc.status != RPCStatusCode.INVALID_ARGUMENT:  # a server before 1.30
            raise
        flagged = []
    seen = {ex.run_id for ex in flagged}
    listed = flagged + [ex for ex in await _listed(client, query, limit) if ex.run_id not in seen]
    found = await _bounded(listed[:limit], lambda ex: _stuck(client, ex, now, older_than), progress)
    return [run for run in found if run is not None]


@dataclass
class ReplayOutcome:
    workflow_id: str
    run_id: str | None
    ok: bool
    error: str | None


def last_task_failure(events: Sequence[HistoryEvent]) -> str | None:
    """Why the run's workflow task failed after its last completed one, or None."""
    for event in reversed(events):
        if event.event_type == _WFT_COMPLETED:
            return None
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            return event.workflow_task_failed_event_attributes.failure.message or "no message"
    return None


async def replay_runs(
    client: Client,
    query: str,
    workflows: Sequence[type],
    *,
    limit: int = LIMIT,
    progress: Progress | None = None,
) -> list[ReplayOutcome]:
    """Replay the histories of the matching runs on `workflows` (the code at hand):
    per run, whether it replays, or the non-determinism and where. Changes nothing."""
    from temporalio.worker import Replayer

    replayer = Replayer(workflows=workflows, data_converter=client.data_converter)
    histories = client.list_workflows(query, limit=limit).map_histories()
    out: list[ReplayOutcome] = []
    async with replayer.workflow_replay_iterator(histories) as results:
        async for result in results:
            failure = result.replay_failure
            error = None if failure is None else f"{type(failure).__name__}: {failure}"
            # A replay stops at the last completed workflow task: a run whose task fails
            # after it (every time, or it never completed one) replays clean, though it
            # cannot go on. Its own last failure says why.
            failing = None if error else last_task_failure(result.history.events)
            if failing is not None:
                error = f"its workflow task keeps failing: {failing}"
            out.append(
                ReplayOutcome(
                    workflow_id=result.history.workflow_id,
                    run_id=result.history.run_id,
                    ok=error is None,
                    error=error,
                )
            )
            if progress is not None:
                progress(len(out), None)
    return out


def check_reset_target(to: str) -> str:
    """`last-good`, `first` or `step:<id>`; a ValueError naming the problem otherwise."""
    if to in ("last-good", "first"):
        return to
    if to.startswith("step:") and QUERY_VALUE.fullmatch(to[5:]):
        return to
    raise ValueError(f"--to {to!r}: use last-good, first or step:<step id>")


def reset_point(events: Sequence[HistoryEvent], to: str) -> int | str:
    """The WorkflowTaskCompleted event a reset goes back to (its task runs again on the
    current code), or why there is none.

    - `first`: the run's first workflow task.
    - `last-good`: the task that scheduled the activity that failed (or still
      retries); for a run whose workflow task fails (a bug, a non-determinism), the
      last task that completed.
    - `step:<id>`: the task in which the run last arrived at that step.
    """
    completed = [e.event_id for e in events if e.event_type == _WFT_COMPLETED]
    if not completed:
        return "no workflow task has completed"
    if to == "first":
        return completed[0]
    if to == "last-good":
        return _last_good(events, completed)
    step = to.removeprefix("step:")
    for event in reversed(events):
        if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            attrs = event.upsert_workflow_search_attributes_event_attributes
            shown = attrs.search_attributes.indexed_fields.get(SA_STEP)
            if shown is not None and json.loads(shown.data) == step:
                return attrs.workflow_task_completed_event_id
    started = events[0].workflow_execution_started_event_attributes
    if started.continued_execution_run_id:
        # A continued run starts with the step its predecessor was at, not arriving.
        return f"the run did not arrive at step '{step}' (an earlier run of its chain may)"
    first_step = started.search_attributes.indexed_fields.get(SA_STEP)
    if first_step is not None and json.loads(first_step.data) == step:
        return completed[0]
    return f"the run never arrived at step '{step}'"


_WFT_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
_ACTIVITY_DONE = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


def _last_good(events: Sequence[HistoryEvent], completed: list[int]) -> int | str:
    tasks = [
        e
        for e in events
        if e.event_type
        in (
            _WFT_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        )
    ]
    if tasks and tasks[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
        return completed[-1]
    succeeded = {
        getattr(e, attrs).scheduled_event_id
        for e in events
        for kind, attrs in _ACTIVITY_DONE.items()
        if e.event_type == kind
    }
    for event in reversed(events):
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.event_id not in succeeded
        ):
            return event.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
    return "nothing failed or is retrying in this run"


@dataclass
class ResetOutcome:
    workflow_id: str
    run_id: str
    outcome: Literal["reset", "skipped", "error"]
    detail: str
    new_run_id: str | None = None


async def reset_runs(
    client: Client,
    query: str,
    to: str,
    *,
    reason: str,
    limit: int = LIMIT,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[ResetOutcome]:
    """Reset every matching run to `to` (`check_reset_target`), `concurrency` at a time.
    Signals received after the reset point are applied again to the new run. Mail sent
    before the reset point is not sent again: a send's idempotency key holds the run
    chain's first run id, which a reset keeps. `dry_run` finds the reset points only."""
    check_reset_target(to)
    executions = [
        ex
        for ex in await _listed(client, query, limit)
        # The query's own terms (an operator's `where`) cannot widen it past journeys.
        if ex.status != WorkflowExecutionStatus.CONTINUED_AS_NEW
        and ex.workflow_type == JOURNEY_WORKFLOW
    ]

    async def one(ex: WorkflowExecutionListed) -> ResetOutcome:
        handle = client.get_workflow_handle(ex.id, run_id=ex.run_id)
        try:
            # Resetting a run that is no longer the participant's latest (reset once
            # already, or re-entered since) would end the run they are in now.
            latest = await client.get_workflow_handle(ex.id).describe()
            if latest.run_id != ex.run_id:
                return ResetOutcome(ex.id, ex.run_id, "skipped", "no longer the participant's run")
            history = await handle.fetch_history()
            point = reset_point(history.events, to)
            if isinstance(point, str):
                return ResetOutcome(ex.id, ex.run_id, "skipped", point)
            if dry_run:
                return ResetOutcome(ex.id, ex.run_id, "skipped", f"would reset to event {point}")
            response = await client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=ex.id, run_id=ex.run_id),
                    reason=reason,
                    workflow_task_finish_event_id=point,
                    request_id=str(uuid.uuid4()),
                    reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_SIGNAL,
                )
            )
        except Exception as exc:
            return ResetOutcome(ex.id, ex.run_id, "error", f"{type(exc).__name__}: {exc}")
        return ResetOutcome(
            ex.id, ex.run_id, "reset", f"to event {point}", new_run_id=response.run_id
        )

    return await _bounded(executions, one, progress, concurrency)


T = TypeVar("T")
R = TypeVar("R")


async def _bounded(
    items: Sequence[T],
    work: Callable[[T], Awaitable[R]],
    progress: Progress | None = None,
    concurrency: int = 16,
) -> list[R]:
    """`work` on each item, `concurrency` at a time, in order; progress after each."""
    limit = asyncio.Semaphore(concurrency)
    done = 0

    async def one(item: T) -> R:
        nonlocal done
        async with limit:
            result = await work(item)
        done += 1
        if progress is not None:
            progress(done, len(items))
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))


# --- worker versioning ------------------------------------------------------------------


@dataclass
class VersionRuns:
    """A version of the Worker Deployment and the runs on it (build_id None: the runs
    started by unversioned workers)."""

    build_id: str | None
    status: str  # current, ramping, draining, drained, inactive, created; "-" unversioned
    open_runs: int
    open_journey_runs: int


async def deployment_versions(client: Client, deployment: str) -> list[VersionRuns]:
    """The deployment's versions, newest first, with how many open runs each serves,
    and the open runs on no version (started before versioning was turned on)."""
    described = await client.workflow_service.describe_worker_deployment(
        DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
    )
    summaries = sorted(
        described.worker_deployment_info.version_summaries,
        key=lambda v: v.create_time.ToDatetime(),
        reverse=True,
    )

    async def runs(where: str) -> tuple[int, int]:
        open_ = f'{where} AND ExecutionStatus = "Running"'
        every = await client.count_workflows(open_)
        journeys = await client.count_workflows(f"{JOURNEY_RUNS} AND {open_}")
        return every.count, journeys.count

    out = []
    for summary in summaries:
        build = summary.deployment_version.build_id
        status = WorkerDeploymentVersionStatus.Name(summary.status)
        version = f"{_checked('deployment', deployment)}:{build}"
        counts = await runs(f"TemporalWorkerDeploymentVersion = {_value('version', version)}")
        out.append(
            VersionRuns(
                build, status.removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_").lower(), *counts
            )
        )
    out.append(VersionRuns(None, "-", *await runs("TemporalWorkerDeploymentVersion IS NULL")))
    return out


async def promote(client: Client, deployment: str, build_id: str) -> str | None:
    """Make `build_id` the deployment's current version: new runs start on it (and
    auto-upgrade runs move to it); pinned runs stay where they are. The previous
    current build id."""
    response = await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=deployment,
            build_id=_checked("build id", build_id),
        )
    )
    previous = response.previous_deployment_version.build_id
    return previous or None
