"""Recurring sends (seed 004): create, change, look at, and send a test mail of one."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, ValidationError

from api.deps import Key, PoolDep, SettingsDep, TemporalDep, require_api_key
from api.errors import (
    AUTH_RESPONSES,
    NOT_FOUND_RESPONSE,
    TypedProblem,
    not_found,
    unprocessable,
    unprocessable_response,
    unprocessable_typed,
)
from api.mail import checked_message_journey
from api.outages import OUTAGE_RESPONSE
from api.route_keys import key_problems
from journeys.message_journeys import recurring_journey_key
from journeys.models import RecurringRunInput, RunResult, TesterMail, recurring_schedule_id
from journeys.outages import bounded
from journeys.recurring import (
    RecurringPatch,
    RecurringSendIn,
    effective_status,
    exclusion_problem,
    next_runs,
    sync_schedule,
)
from journeys.recurring_end import stop_when_ended
from journeys.schema import STORED_STATE, UNKNOWN_REFERENCE
from journeys.store import recurring
from journeys.store.conditions_sql import QueryProblem, compiler_for
from journeys.store.contacts import internal_testers, missing_contacts
from journeys.store.journeys import publish
from journeys.store.queries import pairs_sql
from journeys.store.records import get_record
from journeys.store.recurring import StoredSend
from journeys.temporal import API_RPC_TIMEOUT
from workflows.recurring import RecurringRunWorkflow

router = APIRouter(
    prefix="/recurring-sends",
    tags=["recurring sends"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)

# A test mail waits this long for its run to end.
TEST_SECONDS = 60.0


class RunView(BaseModel):
    id: uuid.UUID
    kind: Literal["run", "internal", "test"]
    at: datetime = Field(description="when the run was due")
    local_day: date
    status: str = Field(description="running, completed, skipped or failed")
    reason: str | None = Field(description="why it was skipped or failed")
    counts: dict[str, int] = Field(
        description="found, deduplicated, excluded (sent by another run the same day), "
        "sent, skipped (no address, unsubscribed, bounced, refused), failed"
    )
    workflow_id: str
    finished_at: datetime | None


class RecurringSendView(RecurringSendIn):
    schedule_id: str = Field(description="the Temporal Schedule (web UI: Schedules)")
    message_journey: str | None = Field(description="the journey its message is published as")
    next_runs: list[datetime] = Field(description="the next times it runs (none unless live)")
    last_runs: list[RunView]
    created_at: datetime
    updated_at: datetime


class RecurringSendSummary(BaseModel):
    key: str
    name: str
    status: str
    frequency: str
    times: list[str]
    time_zone: str
    internal: bool


class TestMailIn(BaseModel):
    contact_ids: list[uuid.UUID] = Field(
        min_length=1, max_length=50, description="contacts whose field internal_tester is true"
    )
    record_id: uuid.UUID | None = Field(
        default=None, description="the record that fills `{{ record.* }}`"
    )


def _run_view(run: recurring.Run) -> RunView:
    return RunView(
        id=run.id,
        kind=run.kind,
        at=run.at,
        local_day=run.local_day,
        status=run.status,
        reason=run.reason,
        counts=run.counts,
        workflow_id=run.workflow_id,
        finished_at=run.finished_at,
    )


async def _stored(pool: PoolDep, key: str) -> StoredSend:
    found = await recurring.get_send(pool, key)
    if found is None:
        raise not_found(f"recurring send '{key}' does not exist")
    return found


async def _settled(
    pool: PoolDep, client: TemporalDep, task_queue: str, stored: StoredSend
) -> StoredSend:
    """The send with its status as of today: past its end date it reads stopped (and its
    schedule is paused, should a run not have done so)."""
    today = datetime.now(ZoneInfo(stored.definition.time_zone)).date()
    return await stop_when_ended(pool, client, task_queue, stored, today)


async def _checked(pool: PoolDep, send: RecurringSendIn, zone: str) -> None:
    """422 unless every selection and send it names exists and fits."""
    compiler = await compiler_for(pool, zone)
    if send.internal is None:
        assert send.selection is not None
        problem = exclusion_problem(send.key, send.selection, compiler.selections)
        if problem:
            raise unprocessable([(("selection",), problem)], kind=STORED_STATE)
        return
    internal = send.internal
    content = await recurring.get_send(pool, internal.content_from)
    if content is None or content.definition.internal is not None:
        raise unprocessable(
            [
                (
                    ("internal", "content_from"),
                    f"'{internal.content_from}' is not a recurring send with a message",
                )
            ],
            kind=UNKNOWN_REFERENCE,
        )
    for field in ("lookahead_selection", "recipients_selection"):
        key = getattr(internal, field)
        try:
            sql = await pairs_sql(pool, key, zone)
        except QueryProblem as exc:
            raise unprocessable([(("internal", field), str(exc))], kind=exc.kind) from None
        if field == "lookahead_selection" and sql.record_type is None:
            raise unprocessable(
                [(("internal", field), f"selection '{key}' selects contacts, not records ('of')")],
                kind=UNKNOWN_REFERENCE,
            )


async def _save(
    pool: PoolDep, client: TemporalDep, settings: SettingsDep, send: RecurringSendIn
) -> tuple[StoredSend, bool]:
    """Check, publish the message, make the schedule say so, then store: a failure on the
    way leaves what was stored before as it was."""
    await _checked(pool, send, settings.default_time_zone)
    message_journey = None
    if send.message is not None:
        definition = await checked_message_journey(
            pool, recurring_journey_key(send.key), f"Recurring send: {send.name}", send.message
        )
        message_journey = (await publish(pool, definition)).key
    today = datetime.now(ZoneInfo(send.time_zone)).date()
    status = effective_status(send, send.status, today)
    send = send.model_copy(update={"status": status})
    await sync_schedule(client, settings.task_queue, send, status)
    return await recurring.upsert_send(pool, send, message_journey)


async def _view(pool: PoolDep, client: TemporalDep, stored: StoredSend) -> RecurringSendView:
    upcoming = await next_runs(client, stored.key)
    return RecurringSendView(
        **stored.definition.model_dump(),
        schedule_id=recurring_schedule_id(stored.key),
        message_journey=stored.message_journey,
        next_runs=upcoming.next_runs,
        last_runs=[_run_view(r) for r in await recurring.last_runs(pool, stored.key)],
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


@router.post(
    "",
    response_model=RecurringSendView,
    responses={200: {"description": "changed"}, 201: {"description": "created"}},
)
async def create_recurring_send(
    body: RecurringSendIn,
    request: Request,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> RecurringSendView:
    """Create the recurring send, or replace it: its Temporal Schedule follows at once
    (paused unless the status is live)."""
    if taken := key_problems(request.app, "recurring-sends", body.key, "recurring send"):
        raise unprocessable(taken)
    stored, created = await _save(pool, client, settings, body)
    response.status_code = 201 if created else 200
    return await _view(pool, client, stored)


@router.get("", response_model=list[RecurringSendSummary])
async def list_recurring_sends(
    pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> list[RecurringSendSummary]:
    out = []
    for stored in await recurring.list_sends(pool):
        stored = await _settled(pool, client, settings.task_queue, stored)
        d = stored.definition
        out.append(
            RecurringSendSummary(
                key=d.key,
                name=d.name,
                status=stored.status,
                frequency=d.frequency,
                times=d.times,
                time_zone=d.time_zone,
                internal=d.internal is not None,
            )
        )
    return out


@router.get("/{key}", response_model=RecurringSendView)
async def read_recurring_send(
    key: Key, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> RecurringSendView:
    """The send, its next run times and its last runs with their counts."""
    stored = await _settled(pool, client, settings.task_queue, await _stored(pool, key))
    return await _view(pool, client, stored)


@router.patch("/{key}", response_model=RecurringSendView)
async def change_recurring_send(
    key: Key, body: RecurringPatch, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> RecurringSendView:
    """Change the frequency, times, dates or status (and the rest): at once, on the
    schedule too. `{"status": "stopped"}` pauses it with every setting kept;
    `{"status": "live"}` resumes it."""
    stored = await _stored(pool, key)
    changes = body.model_dump(exclude_unset=True)
    merged: dict[str, Any] = {**stored.definition.model_dump(mode="json"), **changes}
    if "frequency" in changes:  # the other frequency's day fields no longer apply
        for field, frequency in (("weekdays", "weekly"), ("day_of_month", "monthly")):
            if field not in changes and changes["frequency"] != frequency:
                merged[field] = None
    try:
        send = RecurringSendIn.model_validate(merged)
    except ValidationError as exc:
        # The change and what is stored do not fit together (a weekly send given a
        # day_of_month, an end before the stored start): the change alone was valid.
        raise unprocessable(
            [(tuple(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)],
            kind=STORED_STATE,
        ) from None
    saved, _ = await _save(pool, client, settings, send)
    return await _view(pool, client, saved)


@router.post(
    "/{key}/test",
    response_model=RunResult,
    responses={
        422: unprocessable_response("a contact is not an internal tester, or no such record")
    },
)
async def send_test_mail(
    key: Key, body: TestMailIn, pool: PoolDep, client: TemporalDep, settings: SettingsDep
) -> RunResult:
    """Send the message now to internal testers (contacts whose field `internal_tester`
    is true), filled from `record_id`; whatever the status."""
    await _stored(pool, key)
    missing = set(await missing_contacts(pool, body.contact_ids))
    testers = await internal_testers(pool, body.contact_ids)
    problems: list[TypedProblem] = []
    for i, contact_id in enumerate(body.contact_ids):
        if contact_id in missing:
            problems.append(
                (("contact_ids", i), f"contact {contact_id} does not exist", UNKNOWN_REFERENCE)
            )
        elif contact_id not in testers:
            problems.append(
                (
                    ("contact_ids", i),
                    f"contact {contact_id} is not an internal tester: a test mail goes only "
                    "to contacts whose field internal_tester is true",
                    STORED_STATE,
                )
            )
    if body.record_id is not None and await get_record(pool, body.record_id) is None:
        problems.append(
            (("record_id",), f"record {body.record_id} does not exist", UNKNOWN_REFERENCE)
        )
    if problems:
        raise unprocessable_typed(problems)
    test = TesterMail(
        contact_ids=[str(c) for c in body.contact_ids],
        record_id=str(body.record_id) if body.record_id else None,
    )
    handle = await bounded(
        "Temporal",
        client.start_workflow(
            RecurringRunWorkflow.run,
            RecurringRunInput(key=key, test=test),
            id=f"{recurring_schedule_id(key)}/test-{uuid.uuid4()}",
            task_queue=settings.task_queue,
            rpc_timeout=API_RPC_TIMEOUT,
        ),
        TEST_SECONDS,
    )
    result: RunResult = await bounded("Temporal", handle.result(), TEST_SECONDS)
    return result
