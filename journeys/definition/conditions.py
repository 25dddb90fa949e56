"""The condition language of `branch` (and later of `exit_if` and selections).

Only the models live here; `journeys.conditions` evaluates them in the workflow.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.definition.common import FieldName, Key, StepId, Strict

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
    event: Literal["sent", "opened", "clicked"]
    link: str | None = Field(default=None, description="only clicks on this URL count")


class InSelection(Strict):
    """Membership of a selection: `{"selection": "vip"}`."""

    selection: Key


class InProject(Strict):
    """Membership of a project: `{"project": "seminar"}`."""

    project: Key


Membership = InSelection | InProject


class AllOf(Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(Strict):
    not_: Condition = Field(alias="not")


Condition = FieldIs | MessageWas | InSelection | InProject | AllOf | AnyOf | NotOf
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def condition_parts(cond: Condition) -> list[FieldIs | MessageWas | Membership]:
    """The leaves of a condition tree."""
    if isinstance(cond, AllOf):
        return [leaf for c in cond.all for leaf in condition_parts(c)]
    if isinstance(cond, AnyOf):
        return [leaf for c in cond.any for leaf in condition_parts(c)]
    if isinstance(cond, NotOf):
        return condition_parts(cond.not_)
    return [cond]
