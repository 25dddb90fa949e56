"""Steps that choose where the participant goes next, or end the journey."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.definition.common import (
    Edge,
    Problem,
    StepBase,
    StepId,
    Strict,
    message_ref_problems,
    step_problem,
)
from journeys.definition.conditions import (
    Condition,
    MessageWas,
    condition_parts,
    message_kinds_for,
    record_field_problems,
)


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
            for problem in message_ref_problems(
                sid, "if", leaf.message, steps, message_kinds_for(leaf)
            )
        ] + [
            (("steps", sid, *loc), message)
            for loc, message in record_field_problems(self.if_, ("if",), f"step '{sid}': ")
        ]


class SplitBranch(Strict):
    percent: int = Field(ge=1, le=100)
    next: StepId


class Split(StepBase):
    """Send each participant down one branch, by percentage (an A/B test).

    The branch is a function of the participant and the step, not a random draw:
    the same participant always takes the same branch, in every replay.
    """

    type: Literal["split"]
    branches: list[SplitBranch] = Field(min_length=2, max_length=20)

    def edges(self) -> list[Edge]:
        return [
            Edge(f"{b.percent}%", b.next, ("branches", i, "next"))
            for i, b in enumerate(self.branches)
        ]

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        total = sum(b.percent for b in self.branches)
        if total == 100:
            return []
        return [step_problem(sid, ("branches",), f"percentages add up to {total}, not 100")]


class End(StepBase):
    """The participant leaves the journey."""

    type: Literal["end"]
