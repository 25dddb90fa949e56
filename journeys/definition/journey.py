"""A journey: its entry, its start step and its steps."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from journeys.definition.common import (
    KEY_PATTERN,
    FieldName,
    IsoDuration,
    IsoDurationOrZero,
    Key,
    LocalTime,
    StepId,
    Strict,
    parse_duration,
)
from journeys.definition.conditions import Condition
from journeys.definition.steps import Step
from journeys.schema import CROSS_FIELD, OUT_OF_RANGE, equals, exactly_when


class ApiEntry(Strict):
    """Participants are enrolled through `POST /journeys/{key}/enrolments`."""

    type: Literal["api"]


class TriggeredEntry(Strict):
    """An entry set off by something the contact did: like a follow-up, it may wait
    and be conditional (checked when it fires, and again when the wait is over)."""

    schedule_if: Condition | None = Field(
        default=None, description="checked when the entry fires; not met: no entry"
    )
    wait: IsoDurationOrZero | None = Field(
        default=None, description="before the first step (PT0M or absent: at once)"
    )
    run_if: Condition | None = Field(
        default=None, description="checked when the wait is over; not met: skipped"
    )


class EventEntry(TriggeredEntry):
    """`POST /events` with this name starts the journey for the contact."""

    type: Literal["event"]
    name: str = Field(min_length=1, max_length=200)


class FieldChangeEntry(TriggeredEntry):
    """A `POST /contacts` that changes the field (to `to`, or to anything without it)
    starts the journey."""

    type: Literal["field_change"]
    field: FieldName
    # Stored definitions leave out nulls: a `to` of null reads back as absent, which is
    # why absent and null both mean "any change".
    to: Any = Field(
        default=None, description="the value the field changes to; absent or null: any change"
    )


class SelectionEntry(Strict):
    """Members of the selection enter, checked every `every` on a Temporal Schedule: each
    member without an open run whom the re-entry rule lets in (with `always`, a member
    who stays in the selection starts again after each run ends; `once` or `after` enter
    members once, or once per period). `POST .../enrolments` works besides."""

    type: Literal["selection"]
    selection: Key
    every: IsoDuration = Field(description="how often the selection is looked at; PT1M or more")

    @model_validator(mode="after")
    def _not_too_often(self) -> SelectionEntry:
        if parse_duration(self.every) < timedelta(minutes=1):
            raise PydanticCustomError(OUT_OF_RANGE, "'every' is one minute or more")
        return self


Entry = Annotated[
    ApiEntry | EventEntry | FieldChangeEntry | SelectionEntry, Field(discriminator="type")
]


class Reentry(Strict):
    """Whether a contact may enter again once a run has ended.

    `always`: whenever no run is open; `once`: never again; `after`: once the
    last entry is longer ago than `after`.
    """

    model_config = ConfigDict(json_schema_extra=exactly_when(equals("policy", "after"), "after"))

    policy: Literal["once", "always", "after"] = "always"
    after: IsoDuration | None = None

    @model_validator(mode="after")
    def _after_needs_duration(self) -> Reentry:
        if (self.policy == "after") != (self.after is not None):
            raise ValueError("give 'after' (a duration) exactly when the policy is 'after'")
        return self


class QuietHours(Strict):
    """Hours of the contact's local day in which the journey sends no message: a mail or
    SMS due then waits for `end`. A step with `transactional` sends all the same."""

    start: LocalTime = Field(description="from this local time", examples=["21:00"])
    end: LocalTime = Field(
        description="until this local time; past midnight when earlier than start",
        examples=["08:00"],
    )

    @model_validator(mode="after")
    def _a_span(self) -> QuietHours:
        if self.start == self.end:
            raise PydanticCustomError(
                CROSS_FIELD, "quiet hours must end at another time than they start"
            )
        return self


class JourneyDefinition(Strict):
    key: str = Field(pattern=KEY_PATTERN, description="stable id of the journey, used in URLs")
    name: str = Field(min_length=1, max_length=200)
    entry: Entry
    start: StepId
    steps: dict[StepId, Step] = Field(min_length=1)
    reentry: Reentry = Field(default_factory=Reentry)
    exit_if: Condition | None = Field(
        default=None,
        description="checked before every step and when an event or profile change arrives",
    )
    quiet_hours: QuietHours | None = Field(
        default=None,
        description="local hours in which no mail or SMS goes out: one due then waits",
    )
