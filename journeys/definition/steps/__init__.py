"""Every step kind, by family; `Step` is the union the `type` field selects from."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from journeys.definition.steps.flow import Branch, End
from journeys.definition.steps.messaging import SendEmail
from journeys.definition.steps.profile import UpdateContact
from journeys.definition.steps.timing import Wait, WaitForEvent

Step = Annotated[
    SendEmail | Wait | WaitForEvent | Branch | UpdateContact | End, Field(discriminator="type")
]

__all__ = ["Branch", "End", "SendEmail", "Step", "UpdateContact", "Wait", "WaitForEvent"]
