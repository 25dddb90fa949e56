"""A journey: its entry, its start step and its steps."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from journeys.definition.common import KEY_PATTERN, StepId, Strict
from journeys.definition.steps import Step


class ApiEntry(Strict):
    """Participants are enrolled through `POST /journeys/{key}/enrolments`."""

    type: Literal["api"]


Entry = Annotated[ApiEntry, Field(discriminator="type")]


class JourneyDefinition(Strict):
    key: str = Field(pattern=KEY_PATTERN, description="stable id of the journey, used in URLs")
    name: str = Field(min_length=1, max_length=200)
    entry: Entry
    start: StepId
    steps: dict[StepId, Step] = Field(min_length=1)
