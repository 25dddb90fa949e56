"""Steps that choose where the participant goes next, or end the journey."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.definition.common import (
    Edge,
    Problem,
    StepBase,
    StepId,
    message_ref_problems,
)
from journeys.definition.conditions import Condition, MessageWas, condition_parts


class Branch(StepBase):
    """Go to `then` when the condition holds, else to `else`."""

    type: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: StepId
    else_: StepId = Field(alias="else")

    def edges(self) -> list[Edge]:
        return [Edge("then", self.then, ("then",)), Edge("else", self.else_, ("else",))]

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        return [
            problem
            for leaf in condition_parts(self.if_)
            if isinstance(leaf, MessageWas)
            for problem in message_ref_problems(sid, "if", leaf.message, steps, ("send_email",))
        ]


class End(StepBase):
    """The participant leaves the journey."""

    type: Literal["end"]
