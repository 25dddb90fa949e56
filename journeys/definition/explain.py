"""Validation errors about steps, in the words of the definition format: which step,
what is wrong, and what is allowed instead (pydantic's own words name tags and
discriminators: "Input tag 'send_fax' found using 'type' does not match …")."""

from __future__ import annotations

from typing import Any

from journeys.definition.steps import STEP_KINDS

_KINDS = ", ".join(STEP_KINDS)


def _fields_of(kind: str) -> str:
    model = STEP_KINDS[kind]
    return ", ".join(field.alias or name for name, field in model.model_fields.items())


def _step_at(loc: tuple[Any, ...]) -> tuple[int, str] | None:
    """Where in `loc` a step id is (the index after the last `steps`), and the id."""
    for i in range(len(loc) - 2, -1, -1):
        if loc[i] == "steps" and isinstance(loc[i + 1], str):
            return i + 1, loc[i + 1]
    return None


def explained(error: dict[str, Any]) -> str | None:
    """A message naming the step and what it may be, for an error about a step's type
    or fields; None for any other error (its own message says it well enough)."""
    loc = tuple(error.get("loc", ()))
    found = _step_at(loc)
    if found is None:
        return None
    at, sid = found
    rest = loc[at + 1 :]
    kind = error.get("type")
    if kind == "union_tag_invalid" and not rest:
        tag = (error.get("ctx") or {}).get("tag")
        return f"step '{sid}': there is no step type '{tag}'; the types are {_KINDS}"
    if kind == "union_tag_not_found" and not rest:
        return f"step '{sid}': give its 'type', one of {_KINDS}"
    if kind in ("extra_forbidden", "missing") and len(rest) == 2 and rest[0] in STEP_KINDS:
        step_kind, field = rest
        if kind == "missing":
            return f"step '{sid}': a {step_kind} step needs '{field}'"
        return (
            f"step '{sid}': a {step_kind} step has no field '{field}'; "
            f"its fields are {_fields_of(step_kind)}"
        )
    return None
