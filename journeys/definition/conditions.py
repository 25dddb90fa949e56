"""The condition language of `branch` (and later of `exit_if` and selections).

Only the models live here; `journeys.conditions` evaluates them in the workflow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.definition.common import (
    DeliveryErrorKind,
    FieldName,
    IsoDuration,
    Key,
    MessageEventName,
    StepId,
    Strict,
)

Operator = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
]


class FieldIs(Strict):
    """Compare a profile field: `{"field": "plan", "op": "eq", "value": "pro"}`."""

    field: FieldName
    op: Operator = "eq"
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
    """Which messages count: a journey's, or one step of it."""

    journey: Key
    step: StepId | None = Field(default=None, description="only this step's messages")


class Received(Strict):
    """Message history, answered by the database: the contact was sent a message of
    `received` within the last `within` (ever, without it):
    `{"received": {"journey": "welcome", "step": "mail1"}, "within": "P7D"}`."""

    received: ReceivedFrom
    within: IsoDuration | None = None


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
    FieldIs | MessageWas | InSelection | InProject | Received | Anniversary | AllOf | AnyOf | NotOf
)
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def condition_parts(cond: Condition) -> list[FieldIs | MessageWas | StoredFact]:
    """The leaves of a condition tree."""
    if isinstance(cond, AllOf):
        return [leaf for c in cond.all for leaf in condition_parts(c)]
    if isinstance(cond, AnyOf):
        return [leaf for c in cond.any for leaf in condition_parts(c)]
    if isinstance(cond, NotOf):
        return condition_parts(cond.not_)
    return [cond]


def message_kinds_for(cond: MessageWas) -> tuple[str, ...]:
    """The step types a condition on `cond.event` may name: any message is sent and may
    fail to arrive; only an e-mail is opened, clicked or unsubscribed from."""
    if cond.event in ("sent", "delivery_error"):
        return ("send_email", "send_sms")
    return ("send_email",)
