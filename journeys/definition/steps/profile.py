"""Steps that change the participant's profile or its memberships."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from journeys.definition.common import (
    CONTACT_COLUMNS,
    READ_ONLY_FIELDS,
    FieldName,
    Key,
    Problem,
    StepBase,
    StepId,
    Strict,
    step_problem,
)
from journeys.schema import equals, exactly_when, given

OpName = Literal["set", "clear", "increment", "decrement", "append", "remove", "set_now"]
# What each operation needs: a value, and which declared field types it fits
# (a free field without a declared type takes any of them).
OP_NEEDS_VALUE = {"set", "increment", "decrement", "append", "remove"}
OP_FIELD_TYPES: dict[str, set[str]] = {
    "set": {"text", "number", "boolean", "date", "datetime", "list"},
    "clear": {"text", "number", "boolean", "date", "datetime", "list"},
    "increment": {"number"},
    "decrement": {"number"},
    "append": {"list"},
    "remove": {"list"},
    "set_now": {"date", "datetime"},
}


class FieldOp(Strict):
    """One change to one field: `{"field": "score", "op": "increment", "value": 5}`."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                exactly_when(equals("op", *sorted(OP_NEEDS_VALUE)), "value"),
                {
                    "if": equals("op", "increment", "decrement"),
                    "then": {"properties": {"value": {"type": "number"}}},
                },
                {
                    "if": equals("op", "append", "remove"),
                    "then": {"properties": {"value": {"type": ["string", "number", "boolean"]}}},
                },
            ]
        }
    )

    field: FieldName
    op: OpName
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> FieldOp:
        if self.op in OP_NEEDS_VALUE and self.value is None:
            raise ValueError(f"'{self.op}' needs a value")
        if self.op not in OP_NEEDS_VALUE and self.value is not None:
            raise ValueError(f"'{self.op}' takes no value")
        if self.op in ("increment", "decrement") and (
            isinstance(self.value, bool) or not isinstance(self.value, (int, float))
        ):
            raise ValueError(f"'{self.op}' needs a number, not {self.value!r}")
        if self.op in ("append", "remove") and isinstance(self.value, (list, dict)):
            raise ValueError(f"'{self.op}' takes one list element (text, number or boolean)")
        return self


class UpdateContact(StepBase):
    """Change profile fields: `set` values, and/or `ops` applied in one statement."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [given("set"), given("ops")]})

    type: Literal["update_contact"]
    set: dict[FieldName, Any] | None = Field(default=None, min_length=1)
    ops: list[FieldOp] | None = Field(default=None, min_length=1, max_length=50)
    next: StepId

    @model_validator(mode="after")
    def _something_to_do(self) -> UpdateContact:
        if self.set is None and self.ops is None:
            raise ValueError("give 'set', 'ops' or both")
        return self

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        problems = [
            step_problem(sid, ("set", name), f"field '{name}' cannot be changed")
            for name in self.set or {}
            if name in READ_ONLY_FIELDS
        ]
        seen = set(self.set or {})
        for i, op in enumerate(self.ops or []):
            if op.field in READ_ONLY_FIELDS:
                problems.append(
                    step_problem(sid, ("ops", i, "field"), f"field '{op.field}' cannot be changed")
                )
            elif op.field in CONTACT_COLUMNS and op.op not in ("set", "clear"):
                problems.append(
                    step_problem(
                        sid,
                        ("ops", i, "op"),
                        f"'{op.op}' does not apply to text field '{op.field}'",
                    )
                )
            if op.field in seen:
                problems.append(
                    step_problem(
                        sid,
                        ("ops", i, "field"),
                        f"field '{op.field}' is changed twice in this step",
                    )
                )
            seen.add(op.field)
        return problems


class _Membership(StepBase):
    next: StepId


class AddToSelection(_Membership):
    """Make the participant a member of a static selection."""

    type: Literal["add_to_selection"]
    selection: Key


class RemoveFromSelection(_Membership):
    type: Literal["remove_from_selection"]
    selection: Key


class AddToProject(_Membership):
    """Make the participant a member of a project."""

    type: Literal["add_to_project"]
    project: Key


class RemoveFromProject(_Membership):
    type: Literal["remove_from_project"]
    project: Key


MembershipStep = AddToSelection | RemoveFromSelection | AddToProject | RemoveFromProject


def action_signatures(step: Any) -> set[tuple[Any, ...]]:
    """What a profile step does, one tuple per effect, so that two steps doing the same
    thing to a participant can be told apart from two that do not (A10)."""
    if isinstance(step, UpdateContact):
        found: set[tuple[Any, ...]] = {
            ("set", name, repr(value)) for name, value in (step.set or {}).items()
        }
        found |= {(op.op, op.field, repr(op.value)) for op in step.ops or []}
        return found
    if isinstance(step, (AddToSelection, RemoveFromSelection)):
        return {(step.type, step.selection)}
    if isinstance(step, (AddToProject, RemoveFromProject)):
        return {(step.type, step.project)}
    return set()


def describe_signature(signature: tuple[Any, ...]) -> str:
    """`adds to selection 'hot'`, `does increment on field 'clicks' (1)`."""
    kind, target, *value = signature
    verb, _, group = kind.partition("_")
    if group.endswith(("selection", "project")):
        where = "to" if verb == "add" else "from"
        return f"{verb}s {where} {group.split('_')[-1]} '{target}'"
    shown = f" ({value[0]})" if value and value[0] != "None" else ""
    return f"does {kind} on field '{target}'{shown}"
