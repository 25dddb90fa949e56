"""Steps in which the participant waits: for a time, or for something to happen."""

from __future__ import annotations

from itertools import combinations
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, ConfigDict, Field, model_validator

from journeys.definition.common import (
    DeliveryErrorKind,
    Edge,
    FieldName,
    IsoDuration,
    LocalTime,
    MessageEventName,
    Problem,
    StepBase,
    StepId,
    message_ref_problems,
    parse_duration,
    step_problem,
)
from journeys.schema import SIGNED_DURATION_SCHEMA, Schema, absent, equals, given

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SignedDuration = Annotated[
    str,
    AfterValidator(lambda text: parse_duration(text.removeprefix("-")) and text),
    Schema(SIGNED_DURATION_SCHEMA),
    Field(
        description="ISO-8601 duration, negative with a leading '-', e.g. -P1D",
        examples=["-P1D"],
    ),
]


class Wait(StepBase):
    """Wait a duration (minutes up to years), until an instant, until a date in the
    profile (its next anniversary), or until the next local time on given weekdays.

    Local times are in the contact's time zone and worked out by an activity; the
    workflow sleeps until the UTC instant it gets. A moment in the past moves on
    at once.
    """

    # `_one_kind_of_wait` as JSON Schema.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "not": {
                        "anyOf": [
                            {"allOf": [given(a), given(b)]}
                            for a, b in combinations(("duration", "until", "until_field"), 2)
                        ]
                    }
                },
                {"anyOf": [given(name) for name in ("duration", "until", "until_field", "at")]},
                {
                    "if": {"anyOf": [equals("anniversary", True), given("offset")]},
                    "then": given("until_field"),
                },
                {"if": given("at"), "then": absent("duration", "until")},
                {
                    "if": given("weekdays"),
                    "then": {"allOf": [given("at"), absent("duration", "until", "until_field")]},
                },
            ]
        }
    )
    waits: ClassVar[bool] = True

    type: Literal["wait"]
    duration: IsoDuration | None = None
    until: AwareDatetime | None = Field(default=None, examples=["2027-01-01T09:00:00Z"])
    until_field: FieldName | None = Field(
        default=None, description="a date or datetime field of the contact"
    )
    anniversary: bool = Field(
        default=False, description="with until_field: the next anniversary of that date"
    )
    offset: SignedDuration | None = Field(
        default=None, description="with until_field: shift the moment, e.g. -P1D"
    )
    at: LocalTime | None = Field(default=None, description="local time in the contact's zone")
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    next: StepId

    @model_validator(mode="after")
    def _one_kind_of_wait(self) -> Wait:
        kinds = [
            name
            for name, given in (
                ("duration", self.duration is not None),
                ("until", self.until is not None),
                ("until_field", self.until_field is not None),
            )
            if given
        ]
        if len(kinds) > 1:
            raise ValueError(f"give one of duration, until and until_field, not {kinds}")
        if not kinds and self.at is None:
            raise ValueError("give duration, until, until_field or at")
        if self.until_field is None and (self.anniversary or self.offset is not None):
            raise ValueError("anniversary and offset apply to until_field")
        if self.at is not None and kinds and kinds != ["until_field"]:
            raise ValueError("at applies to until_field or stands alone (next local time)")
        if self.weekdays is not None and (kinds or self.at is None):
            raise ValueError("weekdays applies to a wait for the next local time (at)")
        return self

    @property
    def needs_calendar(self) -> bool:
        """Whether the moment depends on the contact (time zone or a field)."""
        return self.until_field is not None or self.at is not None


class WaitForEvent(StepBase):
    """Wait until something happens to a message (opened, clicked, a delivery error, an
    unsubscribe) or a named event arrives; else time out."""

    waits: ClassVar[bool] = True

    type: Literal["wait_for_event"]
    event: MessageEventName | Literal["custom"]
    message: StepId | None = Field(default=None, description="the message step it is about")
    link: str | None = Field(default=None, description="only a click on this URL counts")
    kinds: list[DeliveryErrorKind] | None = Field(
        default=None, description="only these delivery errors count (delivery_error)"
    )
    name: str | None = Field(default=None, description="the event name (custom)")
    timeout: IsoDuration
    on_event: StepId
    on_timeout: StepId

    def edges(self) -> list[Edge]:
        return [
            Edge("on_event", self.on_event, ("on_event",)),
            Edge("on_timeout", self.on_timeout, ("on_timeout",)),
        ]

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        if self.event == "custom":
            return (
                [] if self.name else [step_problem(sid, ("name",), "a custom event needs a name")]
            )
        problems: list[Problem] = []
        if self.message is None:
            problems.append(
                step_problem(
                    sid, ("message",), f"waiting for '{self.event}' needs the message step"
                )
            )
        # An SMS can fail to arrive; only an e-mail is opened, clicked or unsubscribed from.
        kinds = ("send_email", "send_sms") if self.event == "delivery_error" else ("send_email",)
        problems += message_ref_problems(sid, "message", self.message, steps, kinds)
        if self.link is not None and self.event != "clicked":
            problems.append(step_problem(sid, ("link",), "link only applies to clicked"))
        if self.kinds is not None and self.event != "delivery_error":
            problems.append(step_problem(sid, ("kinds",), "kinds only applies to delivery_error"))
        return problems
