from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import (
    IdempotencyKey,
    PoolDep,
    SettingsDep,
    TemporalDep,
    require_api_key,
    within_definition_limits,
)
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    error_response,
    not_found,
    unknown_items,
    unprocessable,
)
from api.openapi import exact_json_schema
from api.outages import OUTAGE_RESPONSE
from api.route_keys import key_problems
from journeys.definition import KEY_PATTERN, JourneyDefinition
from journeys.enrolment import Enrolment, enrol
from journeys.models import JourneyProgress, Removal, StepVisit
from journeys.operations import start_operation
from journeys.ops import workflow_task_failure
from journeys.outages import Unavailable, bounded
from journeys.publishing import NotPublishable, publish_definition
from journeys.schema import DEFINITION, exactly_one_of
from journeys.signals import deliver
from journeys.store import groups
from journeys.store.conditions_sql import QueryProblem
from journeys.store.contacts import missing_contacts
from journeys.store.enrolments import get_enrolment, write_journal_line
from journeys.store.journeys import get_journey, list_versions
from journeys.store.messages import MessageView, messages_of
from journeys.store.queries import selection_sql
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from journeys.terminations import note_terminated_run, termination_reason
from workflows.journey import JourneyWorkflow

JourneyKey = Annotated[str, Path(pattern=KEY_PATTERN, description="the journey's key")]
# PostgreSQL's integer: a larger version cannot exist, and would not fit the query.
Version = Annotated[int | None, Query(ge=1, le=2**31 - 1)]

router = APIRouter(
    prefix="/journeys",
    tags=["journeys"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


class Published(BaseModel):
    key: str
    name: str
    version: int
    published_at: datetime


class JourneyView(Published):
    definition: JourneyDefinition
    versions: list[dict[str, Any]]


class PublishWarning(BaseModel):
    loc: list[str | int]
    msg: str


class PublishedWithWarnings(Published):
    warnings: list[PublishWarning] = Field(
        default_factory=list,
        description="published all the same: steps that repeat what a link action does",
    )


class EnrolmentRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra=exactly_one_of("contact_ids", "selection"))

    contact_ids: list[uuid.UUID] | None = Field(
        default=None, min_length=1, max_length=10_000, description="enrolled in this call"
    )
    selection: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="everyone in this selection, by an operation (answers 202)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> EnrolmentRequest:
        if (self.contact_ids is None) == (self.selection is None):
            raise ValueError("give either 'contact_ids' or 'selection'")
        return self


class OperationStarted(BaseModel):
    operation_id: uuid.UUID
    status: str = Field(description="running, completed or failed: see GET /operations/{id}")


class EnrolmentResponse(BaseModel):
    journey_key: str
    enrolments: list[Enrolment]


class Retrying(BaseModel):
    activity: str = Field(description="the activity's name, or `workflow task` (the run's code)")
    attempt: int
    last_error: str | None


class ParticipantView(BaseModel):
    journey_key: str
    contact_id: uuid.UUID
    workflow_id: str
    run_id: str = Field(description="the contact's latest run of the journey")
    version: int
    status: str = Field(
        description="running, completed, exited, removed, skipped (run_if), failed, or "
        "terminated (from outside the product: an operator, or Temporal itself)"
    )
    reason: str | None = Field(
        default=None, description="why it exited, was removed, failed or was terminated"
    )
    details: str | None = Field(
        default=None, description="where it is and why, as the Temporal web UI says it"
    )
    current_step: str | None
    retrying: Retrying | None = Field(
        default=None,
        description="the step's activity failed and is being retried (a provider down, a "
        "bug): `journeys ops stuck` lists those retrying for long",
    )
    history: list[StepVisit]
    messages: list[MessageView]


class RemovalResponse(BaseModel):
    journey_key: str
    contact_id: uuid.UUID
    status: str = Field(description="removed, or the status of a run that had already ended")


@router.get("/schema", summary="JSON Schema of the journey definition format")
async def definition_schema() -> dict[str, Any]:
    return exact_json_schema(JourneyDefinition.model_json_schema(by_alias=True))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PublishedWithWarnings,
    dependencies=[Depends(within_definition_limits)],
)
async def publish_journey(
    body: JourneyDefinition,
    request: Request,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
) -> PublishedWithWarnings:
    """Validate the definition and store it as the journey's next version. A selection
    entry gets its Temporal Schedule (`entry/<key>`) first; another entry removes it.
    A key that a route answers for (`schema`) is refused."""
    if taken := key_problems(request.app, "journeys", body.key, "journey"):
        raise unprocessable(taken)
    try:
        journey, warnings = await publish_definition(pool, client, settings.task_queue, body)
    except NotPublishable as exc:
        raise unprocessable(exc.problems, kind=DEFINITION) from None
    return PublishedWithWarnings(
        **Published.model_validate(journey.model_dump()).model_dump(),
        warnings=[PublishWarning(loc=["body", *loc], msg=msg) for loc, msg in warnings],
    )


@router.get("/{key}", response_model=JourneyView)
async def read_journey(key: JourneyKey, pool: PoolDep, version: Version = None) -> JourneyView:
    journey = await get_journey(pool, key, version)
    if journey is None:
        raise not_found(f"journey '{key}'{f' version {version}' if version else ''} does not exist")
    return JourneyView(**journey.model_dump(), versions=await list_versions(pool, key))


@router.post(
    "/{key}/enrolments",
    response_model=EnrolmentResponse | OperationStarted,
    responses={
        200: {"description": "contact_ids: every contact's enrolment", "model": EnrolmentResponse},
        202: {"description": "selection: the operation enrolling it", "model": OperationStarted},
        409: error_response("the selection's query names what no longer exists"),
    },
)
async def enrol_contacts(
    key: JourneyKey,
    body: EnrolmentRequest,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EnrolmentResponse | OperationStarted:
    """Enrol contacts in the latest version; a contact already inside keeps its run.

    With `contact_ids`, in this call. The enrolment is recorded before any run
    starts: after a 503 (or no answer), the same call finishes it and starts no
    run twice. Send an `Idempotency-Key` header to make a retry of a call that did
    finish answer the same too (without one, a contact whose run ended meanwhile
    enters again where re-entry allows).

    With `selection`, everyone it holds now, by an operation in the background
    (202): follow it at `GET /operations/{operation_id}`. The same
    `Idempotency-Key` again answers the same operation.
    """
    journey = await get_journey(pool, key)
    if journey is None:
        raise not_found(f"journey '{key}' does not exist")
    request_key = f"api/{idempotency_key}" if idempotency_key else None
    if body.selection is not None:
        try:
            await selection_sql(pool, body.selection, settings.default_time_zone)
        except QueryProblem as exc:
            if await groups.get_group(pool, "selection", body.selection) is None:
                raise unprocessable([(("selection",), str(exc))], kind=exc.kind) from None
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        op = await start_operation(
            client,
            pool,
            settings.task_queue,
            "enrol_selection",
            {"journey": key, "selection": body.selection},
            # The same key for another journey or selection is another operation.
            f"{request_key}/{key}/{body.selection}" if request_key else None,
            f"Enrol selection {body.selection} in {journey.name}",
        )
        response.status_code = status.HTTP_202_ACCEPTED
        return OperationStarted(operation_id=op.id, status=op.status)
    assert body.contact_ids is not None
    missing = await missing_contacts(pool, body.contact_ids)
    if missing:
        raise unknown_items(
            "contact_ids", body.contact_ids, missing, lambda m: f"contact {m} does not exist"
        )
    enrolments = await enrol(
        client, pool, settings.task_queue, journey, body.contact_ids, request_key=request_key
    )
    return EnrolmentResponse(journey_key=key, enrolments=enrolments)


# How long the participant view waits for the run's own account while a workflow task
# is pending (it answers after the task; the description says enough without it).
QUERY_WAIT_WITH_TASK = 2.0

_STATUS = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CANCELED: "removed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
}


@router.get("/{key}/participants/{contact_id}", response_model=ParticipantView)
async def read_participant(
    key: JourneyKey, contact_id: uuid.UUID, pool: PoolDep, client: TemporalDep
) -> ParticipantView:
    """Where the participant is, the steps it took, and what it was sent."""
    return await participant_view(pool, client, key, contact_id)


async def participant_view(
    pool: asyncpg.Pool, client: Client, key: str, contact_id: uuid.UUID
) -> ParticipantView:
    """The participant's latest run: Temporal's description and the run's own account
    (a query), and the messages it sent; 404 when there is none."""
    enrolment = await get_enrolment(pool, key, contact_id)
    if enrolment is None:
        raise not_found(f"contact {contact_id} was never enrolled in journey '{key}'")
    handle = client.get_workflow_handle(enrolment["workflow_id"])

    async def ask_the_run() -> JourneyProgress | None:
        try:
            return await bounded(
                "Temporal",
                handle.query(JourneyWorkflow.progress, rpc_timeout=API_RPC_TIMEOUT),
                API_CALL_SECONDS,
            )
        except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError, Unavailable):
            # No worker to answer, or a failed run whose history no longer replays:
            # describe() reaches Temporal, and the status it gives still tells.
            return None

    # The three answers do not depend on each other: asked together.
    asking = asyncio.ensure_future(ask_the_run())
    reading = asyncio.ensure_future(messages_of(pool, enrolment["workflow_id"]))
    try:
        description = await bounded(
            "Temporal", handle.describe(rpc_timeout=API_RPC_TIMEOUT), API_CALL_SECONDS
        )
    except BaseException as exc:
        asking.cancel()
        reading.cancel()
        await asyncio.gather(asking, reading, return_exceptions=True)
        if not isinstance(exc, RPCError) or exc.status != RPCStatusCode.NOT_FOUND:
            raise
        raise not_found(f"the run of contact {contact_id} in journey '{key}' is gone") from None
    status = _STATUS.get(description.status, "unknown") if description.status else "unknown"
    current_step, history, reason, details = None, [], None, None
    raw = description.raw_description
    failing = raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt > 1
    if failing:
        # The run's own code fails (a bug, an input it cannot read): no query will be
        # answered before the timeout, and the run reads `running` with nothing to say
        # why unless the failure is shown (`retrying`, below).
        asking.cancel()
    progress = None
    if not failing:
        # A query waits for the workflow task in progress: one that fails at its first
        # attempt would hold this answer until the query's timeout.
        waiting = QUERY_WAIT_WITH_TASK if raw.HasField("pending_workflow_task") else None
        try:
            progress = await asyncio.wait_for(asking, waiting)
        except TimeoutError:
            progress = None
    if progress is not None:
        current_step, history, reason = progress.current_step, progress.history, progress.reason
        details = progress.details
        if progress.status in ("exited", "removed", "skipped", "failed"):
            status = progress.status
    if status == "terminated":
        # Ended from outside (an operator, or Temporal refusing a command): the run
        # could not say why itself; its last event does (when Temporal answers). What
        # the run last said of itself ("waiting until …") is no longer so.
        details = None
        try:
            reason = await bounded(
                "Temporal",
                termination_reason(client, description.id, description.run_id),
                API_CALL_SECONDS,
            )
        except (Unavailable, RPCError):
            reason = None
        else:
            await note_terminated_run(pool, contact_id, key, reason, description)
    retrying = next(
        (
            Retrying(
                activity=a.activity_type.name,
                attempt=a.attempt,
                last_error=a.last_failure.message or None,
            )
            for a in raw.pending_activities
            if a.attempt > 1
        ),
        None,
    )
    if failing:
        retrying = Retrying(
            activity="workflow task",
            attempt=raw.pending_workflow_task.attempt,
            last_error=await bounded(
                "Temporal",
                workflow_task_failure(client, description.id, description.run_id or ""),
                API_CALL_SECONDS,
            ),
        )
    return ParticipantView(
        journey_key=key,
        retrying=retrying,
        contact_id=contact_id,
        workflow_id=enrolment["workflow_id"],
        run_id=description.run_id or enrolment["run_id"],
        version=enrolment["version"],
        status=status,
        reason=reason,
        details=details,
        current_step=current_step,
        history=history,
        messages=await reading,
    )


@router.delete("/{key}/participants/{contact_id}", response_model=RemovalResponse)
async def remove_participant(
    key: JourneyKey, contact_id: uuid.UUID, pool: PoolDep, client: TemporalDep
) -> RemovalResponse:
    """Take the contact out of the journey: its run stops before the next step, or at
    once when it is waiting."""
    enrolment = await get_enrolment(pool, key, contact_id)
    if enrolment is None:
        raise not_found(f"contact {contact_id} was never enrolled in journey '{key}'")
    removed = await deliver(client, enrolment["workflow_id"], JourneyWorkflow.remove, Removal())
    if not removed:
        return RemovalResponse(journey_key=key, contact_id=contact_id, status="already_left")
    await write_journal_line(
        pool,
        contact_id,
        "journey_removed",
        f"Removed from journey {key}",
        key,
        f"removed/{enrolment['workflow_id']}/{enrolment['run_id']}",
    )
    return RemovalResponse(journey_key=key, contact_id=contact_id, status="removed")
