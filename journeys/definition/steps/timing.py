"""Steps in which the participant waits: for a time, or for something to happen."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from journeys.definition.common import (
    Edge,
    IsoDuration,
    Problem,
    StepBase,
    StepId,
    message_ref_problems,
    step_problem,
)


class Wait(StepBase):
    """Sleep for a fixed duration (minutes up to years)."""

    waits: ClassVar[bool] = True

    type: Literal["wait"]
    duration: IsoDuration
    next: StepId


class WaitForEvent(StepBase):
    """Wait until a message is opened or clicked, or a named event arrives; else time out."""

    waits: ClassVar[bool] = True

    type: Literal["wait_for_event"]
    event: Literal["opened", "clicked", "custom"]
    message: StepId | None = Field(default=None, description="the send_email step (opened/clicked)")
    link: str | None = Field(default=None, description="only a click on this URL counts")
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
        problems += message_ref_problems(sid, "message", self.message, steps, ("send_email",))
        if self.link is not None and self.event != "clicked":
            problems.append(step_problem(sid, ("link",), "link only applies to clicked"))
        return problems
