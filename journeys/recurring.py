"""Recurring sends (seed 004): a message sent on a schedule to whoever a selection finds.

A recurring send is a Temporal Schedule (`recurring/<key>`, shown on the web UI's
Schedules page) with one calendar spec per time of day, in the send's time zone,
between its start and end dates. Every run it starts is a `RecurringRun` workflow
(`workflows.recurring`) that freezes the recipients, marks those sharing an address,
and sends through the product's send path. Only `live` sends: any other status
keeps the schedule paused with every setting kept.

Two guards keep anyone from getting the same mail twice on a day: the selection
must exclude who received this send within at least a day (checked on saving), and
the send path's idempotency key holds the local day (`send_key`), so a retried run or
two times close together find the mail already sent.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)

from journeys.contacts import TimeZone
from journeys.definition import parse_duration
from journeys.definition.common import KEY_PATTERN
from journeys.definition.conditions import AllOf, Condition, InSelection, NotOf, Received
from journeys.models import RecurringRunInput, recurring_schedule_id
from journeys.outages import bounded
from journeys.schedules import put_schedule
from journeys.schema import (
    CROSS_FIELD,
    MAIL_MESSAGE_SCHEMA,
    Schema,
    absent,
    equals,
    exactly_when,
    given,
)
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from journeys.text import StorableModel

Status = Literal["draft", "testing", "live", "stopped"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# Temporal's calendar counts the days of the week from Sunday.
WEEKDAY_NUMBER = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# No run between these (seed 004: the night belongs to vital processes).
QUIET_FROM, QUIET_UNTIL = time(23, 0), time(6, 0)
# A run the schedule could not start on time (Temporal or the worker away) is still
# started within this, and dropped after: a morning mail is not sent in the evening.
CATCHUP_WINDOW = timedelta(hours=2)
# The shortest look-back of the required exclusion of recent recipients.
MIN_EXCLUSION = timedelta(days=1)


class InternalSend(StorableModel):
    """Before the real send: the content of another recurring send, filled from the
    records a look-ahead selection finds, to internal recipients for checking."""

    content_from: str = Field(
        pattern=KEY_PATTERN, description="the recurring send whose message is checked"
    )
    lookahead_selection: str = Field(
        pattern=KEY_PATTERN,
        description="a selection of contact-record pairs: each record it finds is sent",
    )
    recipients_selection: str = Field(pattern=KEY_PATTERN, description="who checks")
    dedupe: bool = Field(
        default=False, description="one mail per address per run (usually off: one per record)"
    )


# The fields of a send_email step (checked as one when the send is saved).
MailMessage = Annotated[dict[str, Any], WithJsonSchema(MAIL_MESSAGE_SCHEMA)]
# A time of day a send may run at, HH:MM outside the quiet hours (`SendTimes._times`
# says which rule a time breaks; the document states them all).
SEND_TIME_PATTERN = r"^(?:0[6-9]|1[0-9]|2[0-2]):[0-5][0-9]$"
SendTimeList = list[Annotated[str, Schema({"pattern": SEND_TIME_PATTERN})]]


# `SendTimes._fits_frequency` as JSON Schema (the order of the dates it cannot state).
_DAYS_FIT_FREQUENCY: list[JsonValue] = [
    exactly_when(equals("frequency", "weekly"), "weekdays"),
    exactly_when(equals("frequency", "monthly"), "day_of_month"),
]


class SendTimes(StorableModel):
    """When a recurring send runs: the fields PATCH may change."""

    model_config = ConfigDict(json_schema_extra={"allOf": _DAYS_FIT_FREQUENCY})

    frequency: Literal["daily", "weekly", "monthly"]
    weekdays: list[Weekday] | None = Field(
        default=None, min_length=1, description="weekly: the days it runs"
    )
    day_of_month: int | None = Field(
        default=None,
        ge=1,
        le=31,
        description="monthly: the day it runs (31: only in months that have one)",
    )
    times: SendTimeList = Field(
        min_length=1,
        max_length=24,
        json_schema_extra={"uniqueItems": True},
        description="local times of day, HH:MM, from 06:00 to 22:59 (not in the quiet hours)",
        examples=[["09:00"]],
    )
    time_zone: TimeZone = Field(default="Europe/Amsterdam", examples=["Europe/Amsterdam"])
    start_date: date = Field(description="nothing is sent before it")
    end_date: date | None = Field(
        default=None, description="the last day it runs; afterwards the status reads stopped"
    )

    @field_validator("times")
    @classmethod
    def _times(cls, times: list[str]) -> list[str]:
        seen: list[str] = []
        for text in times:
            try:
                at = time.fromisoformat(text)
            except ValueError:
                raise ValueError(f"'{text}' is not a time of day such as 09:00") from None
            if at.second or at.microsecond or len(text) != 5:
                raise ValueError(f"'{text}' must be given as HH:MM")
            if at >= QUIET_FROM or at < QUIET_UNTIL:
                raise ValueError(
                    f"{text} falls in the quiet hours: no recurring send may run between "
                    "23:00 and 06:00"
                )
            if text in seen:
                raise ValueError(f"{text} is listed twice")
            seen.append(text)
        return sorted(seen)

    @model_validator(mode="after")
    def _fits_frequency(self) -> SendTimes:
        if (self.frequency == "weekly") != (self.weekdays is not None):
            raise ValueError("give 'weekdays' exactly when the frequency is weekly")
        if (self.frequency == "monthly") != (self.day_of_month is not None):
            raise ValueError("give 'day_of_month' exactly when the frequency is monthly")
        if self.end_date is not None and self.end_date < self.start_date:
            raise PydanticCustomError(CROSS_FIELD, "'end_date' comes before 'start_date'")
        return self


class RecurringSendIn(SendTimes):
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                *_DAYS_FIT_FREQUENCY,
                {
                    "oneOf": [
                        {"allOf": [given("message"), given("selection"), absent("internal")]},
                        {"allOf": [given("internal"), absent("message", "selection")]},
                    ]
                },
            ]
        }
    )

    key: str = Field(pattern=KEY_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    message: MailMessage | None = Field(
        default=None,
        description="the mail: the fields of a send_email step (subject, html, text, "
        "sender, attachments, follow_ups); `{{ record.<field> }}` fills from the "
        "recipient's record in a selection of pairs",
    )
    selection: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="who receives it: a query selection (of contacts, or of contact-record "
        "pairs) that excludes who received this send within at least a day",
    )
    status: Status = "draft"
    dedupe: bool = Field(default=True, description="one message per e-mail address per run")
    internal: InternalSend | None = Field(
        default=None, description="makes this an internal send (no message or selection)"
    )

    @model_validator(mode="after")
    def _kind(self) -> RecurringSendIn:
        if self.internal is None and (self.message is None or self.selection is None):
            raise ValueError("give 'message' and 'selection' (or 'internal' for an internal send)")
        if self.internal is not None and (self.message is not None or self.selection):
            raise ValueError(
                "an internal send takes its message from 'internal.content_from' and its "
                "recipients from 'internal.recipients_selection': leave out 'message' and "
                "'selection'"
            )
        return self


class RecurringPatch(StorableModel):
    """What PATCH changes: any of these; the rest stays."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    frequency: Literal["daily", "weekly", "monthly"] | None = None
    weekdays: list[Weekday] | None = None
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    times: SendTimeList | None = Field(
        default=None, min_length=1, max_length=24, json_schema_extra={"uniqueItems": True}
    )
    time_zone: TimeZone | None = None
    start_date: date | None = None
    end_date: date | None = None
    status: Status | None = None
    dedupe: bool | None = None
    selection: str | None = Field(default=None, pattern=KEY_PATTERN)
    message: MailMessage | None = None


def local_day(at: datetime, time_zone: str) -> date:
    return at.astimezone(ZoneInfo(time_zone)).date()


def send_key(key: str, day: date, contact_id: str, record_id: str | None) -> str:
    """The idempotency key of one recurring mail: one per contact (and record) per local
    day, whichever run of the day sends it."""
    return f"recurring/{key}/{day.isoformat()}/{contact_id}/{record_id or '-'}"


def effective_status(send: RecurringSendIn, status: str, today: date) -> str:
    """The status as it reads on `today` (the send's local date): past the end date a
    send is stopped."""
    if send.end_date is not None and today > send.end_date and status != "stopped":
        return "stopped"
    return status


def exclusion_problem(key: str, selection: str, queries: dict[str, Condition | None]) -> str | None:
    """Why the selection does not exclude recent recipients of this send, or None.

    The exclusion must hold whatever else the query says: a `not received` of this
    send within a day or more, among the conditions the query ands together (nested
    `all`s and the selections it is made of count too)."""
    if selection not in queries:
        return f"selection '{selection}' does not exist"
    if queries[selection] is None:
        return (
            f"selection '{selection}' is a static selection: a recurring send needs a query "
            f"selection that excludes who received it recently"
        )
    if _excludes(key, queries[selection], queries, seen=set()):
        return None
    return (
        f"selection '{selection}' must exclude who received this send within at least a "
        f'day: add {{"not": {{"received": {{"recurring": "{key}"}}, "within": "P1D"}}}} '
        "to its conditions (under 'all')"
    )


def _excludes(
    key: str, cond: Condition | None, queries: dict[str, Condition | None], seen: set[str]
) -> bool:
    if isinstance(cond, AllOf):
        return any(_excludes(key, c, queries, seen) for c in cond.all)
    if isinstance(cond, InSelection):
        if cond.selection in seen:
            return False
        return _excludes(key, queries.get(cond.selection), queries, seen | {cond.selection})
    if isinstance(cond, NotOf) and isinstance(cond.not_, Received):
        received = cond.not_
        recurring = getattr(received.received, "recurring", None)
        long_enough = received.within is None or parse_duration(received.within) >= MIN_EXCLUSION
        # "not opened" excludes only those who opened: not the recent recipients.
        return recurring == key and long_enough and received.event is None
    return False


# --- the Temporal Schedule ----------------------------------------------------------------


def _calendars(send: SendTimes) -> list[ScheduleCalendarSpec]:
    calendars = []
    for text in send.times:
        at = time.fromisoformat(text)
        extra: dict[str, Any] = {}
        if send.frequency == "weekly":
            assert send.weekdays is not None
            days = sorted(WEEKDAY_NUMBER[d] for d in set(send.weekdays))
            extra["day_of_week"] = [ScheduleRange(d) for d in days]
        elif send.frequency == "monthly":
            assert send.day_of_month is not None
            extra["day_of_month"] = [ScheduleRange(send.day_of_month)]
        calendars.append(
            ScheduleCalendarSpec(
                hour=[ScheduleRange(at.hour)],
                minute=[ScheduleRange(at.minute)],
                second=[ScheduleRange(0)],
                comment=f"{send.frequency} at {text}",
                **extra,
            )
        )
    return calendars


def schedule_spec(send: SendTimes) -> ScheduleSpec:
    zone = ZoneInfo(send.time_zone)
    start = datetime.combine(send.start_date, time(0), zone)
    end = (
        datetime.combine(send.end_date + timedelta(days=1), time(0), zone)
        if send.end_date is not None
        else None
    )
    return ScheduleSpec(
        calendars=_calendars(send), time_zone_name=send.time_zone, start_at=start, end_at=end
    )


def _note(send: RecurringSendIn, status: str) -> str:
    what = "internal send" if send.internal else "recurring send"
    return f"{what} '{send.name}': {status}" + ("" if status == "live" else " (does not send)")


def build_schedule(send: RecurringSendIn, status: str, task_queue: str) -> Schedule:
    from workflows.recurring import RecurringRunWorkflow

    return Schedule(
        action=ScheduleActionStartWorkflow(
            RecurringRunWorkflow.run,
            RecurringRunInput(key=send.key),
            id=recurring_schedule_id(send.key),
            task_queue=task_queue,
        ),
        spec=schedule_spec(send),
        # Runs of one send go one after the other: a second time of the day starts when
        # the first is done (and finds its mails sent).
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.BUFFER_ALL, catchup_window=CATCHUP_WINDOW
        ),
        state=ScheduleState(note=_note(send, status), paused=status != "live"),
    )


async def sync_schedule(
    client: Client, task_queue: str, send: RecurringSendIn, status: str
) -> None:
    """Make the send's schedule say what the send says: its times, and paused unless live."""
    await put_schedule(
        client, recurring_schedule_id(send.key), build_schedule(send, status, task_queue)
    )


class NextRuns(BaseModel):
    next_runs: list[datetime]
    paused: bool


async def next_runs(client: Client, key: str) -> NextRuns:
    """The schedule's next run times (none while paused)."""
    handle = client.get_schedule_handle(recurring_schedule_id(key))
    described = await bounded(
        "Temporal", handle.describe(rpc_timeout=API_RPC_TIMEOUT), API_CALL_SECONDS
    )
    paused = described.schedule.state.paused
    return NextRuns(next_runs=[] if paused else described.info.next_action_times, paused=paused)
