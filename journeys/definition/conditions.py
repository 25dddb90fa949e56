"""The condition language of `branch` (and later of `exit_if` and selections).

Only the models live here; `journeys.conditions` evaluates them in the workflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from journeys.definition.common import (
    DeliveryErrorKind,
    FieldName,
    IsoDuration,
    Key,
    Location,
    MessageEventName,
    Problem,
    StepId,
    Strict,
)
from journeys.schema import DURATION_SCHEMA, equals, exactly_one_of, only_with

Operator = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
]


class FieldIs(Strict):
    """Compare a profile field: `{"field": "plan", "op": "eq", "value": "pro"}`."""

    field: FieldName
    op: Operator = "eq"
    value: Any = None


# A record's date or datetime lies between now and now + `value` (an ISO-8601 duration),
# or between now - `value` and now.
RecordOperator = Literal[Operator, "within_next", "within_last"]


class RecordFieldIs(Strict):
    """Compare a field of the record in a selection `of` a record type:
    `{"record_field": "starts_at", "op": "within_next", "value": "P2D"}`. Only a
    selection's SQL answers it (over the pair's record); journeys refuse it."""

    # What the SQL takes of each operator's value (`journeys.store.conditions_sql`).
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": equals("op", "in", "not_in"),
                    "then": {"properties": {"value": {"type": "array"}}},
                },
                {
                    "if": equals("op", "gt", "gte", "lt", "lte"),
                    "then": {"properties": {"value": {"type": ["string", "number"]}}},
                },
                {
                    "if": equals("op", "within_next", "within_last"),
                    "then": {"properties": {"value": {"type": "string", **DURATION_SCHEMA}}},
                },
            ]
        }
    )

    record_field: FieldName
    op: RecordOperator = "eq"
    value: Any = None


class MessageWas(Strict):
    """What happened to a message this journey sent: `{"message": "mail1", "event": "clicked"}`."""

    message: StepId
    event: Literal["sent"] | MessageEventName
    link: str | None = Field(default=None, description="only clicks on this URL count")
    kinds: list[DeliveryErrorKind] | None = Field(
        default=None, description="only these delivery errors count (delivery_error)"
    )


class InSelection(Strict):
    """Membership of a selection: `{"selection": "vip"}`."""

    selection: Key


class InProject(Strict):
    """Membership of a project: `{"project": "seminar"}`."""

    project: Key


Membership = InSelection | InProject


class ReceivedFrom(Strict):
    """Which messages count: a journey's, one step of it, or a recurring send's (in a
    selection of records: those about the pair's record)."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [exactly_one_of("journey", "recurring"), only_with("step", "journey")]
        }
    )

    journey: Key | None = None
    step: StepId | None = Field(default=None, description="only this step's messages")
    recurring: Key | None = Field(default=None, description="a recurring send's messages")

    @model_validator(mode="after")
    def _one_source(self) -> ReceivedFrom:
        if (self.journey is None) == (self.recurring is None):
            raise ValueError("give exactly one of 'journey' and 'recurring'")
        if self.step is not None and self.journey is None:
            raise ValueError("'step' names a step of a journey: give it with 'journey'")
        return self


class Received(Strict):
    """Message history, answered by the database: the contact was sent a message of
    `received` within the last `within` (ever, without it):
    `{"received": {"journey": "welcome", "step": "mail1"}, "within": "P7D"}` or
    `{"received": {"recurring": "service-mail"}, "within": "P1D"}`. With `event`, one
    they opened or clicked, `within` counting back from the open or click:
    `{"received": {"journey": "newsletter"}, "event": "clicked", "within": "P90D"}`."""

    received: ReceivedFrom
    within: IsoDuration | None = None
    event: Literal["opened", "clicked"] | None = Field(
        default=None, description="only messages the contact opened, or clicked a link in"
    )


class Anniversary(Strict):
    """`{"anniversary": "birthday"}`: the month and day of this date field is today in
    the contact's time zone (29 February counts on 28 February in other years)."""

    anniversary: FieldName


# Leaves answered by the database when the contact is loaded (or by a selection's SQL).
StoredFact = InSelection | InProject | Received | Anniversary


class AllOf(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(Strict):
    not_: Condition = Field(alias="not")


Condition = (
    FieldIs
    | RecordFieldIs
    | MessageWas
    | InSelection
    | InProject
    | Received
    | Anniversary
    | AllOf
    | AnyOf
    | NotOf
)
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()

Leaf = FieldIs | RecordFieldIs | MessageWas | StoredFact


def condition_parts(cond: Condition) -> list[Leaf]:
    """The leaves of a condition tree."""
    return [leaf for _, leaf in located_parts(cond)]


def located_parts(cond: Condition, loc: Location = ()) -> Iterator[tuple[Location, Leaf]]:
    """The leaves of a condition tree with where each is (`loc` extended by `all`, `any`
    and `not`, as the API's errors name places)."""
    if isinstance(cond, AllOf):
        for i, c in enumerate(cond.all):
            yield from located_parts(c, (*loc, "all", i))
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            yield from located_parts(c, (*loc, "any", i))
    elif isinstance(cond, NotOf):
        yield from located_parts(cond.not_, (*loc, "not"))
    else:
        yield loc, cond


def record_field_problems(cond: Condition | None, loc: Location, where: str) -> list[Problem]:
    """`record_field` leaves in a journey's condition: a journey runs per contact, and
    only a selection of records has a record to ask about."""
    if cond is None:
        return []
    return [
        (
            (*at, "record_field"),
            f"{where}record_field is for selections of records ('of'); "
            "a journey's conditions are about the contact",
        )
        for at, leaf in located_parts(cond, loc)
        if isinstance(leaf, RecordFieldIs)
    ]


def message_kinds_for(cond: MessageWas) -> tuple[str, ...]:
    """The step types a condition on `cond.event` may name: any message is sent and may
    fail to arrive; only an e-mail is opened, clicked or unsubscribed from."""
    if cond.event in ("sent", "delivery_error"):
        return ("send_email", "send_sms")
    return ("send_email",)
