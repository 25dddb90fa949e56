"""Steps that change the participant's profile."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.definition.common import (
    READ_ONLY_FIELDS,
    FieldName,
    Problem,
    StepBase,
    StepId,
    step_problem,
)


class UpdateContact(StepBase):
    """Set profile fields of the participant."""

    type: Literal["update_contact"]
    set: dict[FieldName, Any] = Field(min_length=1)
    next: StepId

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        return [
            step_problem(sid, ("set", name), f"field '{name}' cannot be changed")
            for name in self.set
            if name in READ_ONLY_FIELDS
        ]
