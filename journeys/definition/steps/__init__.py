"""Every step kind, by family; `Step` is the union the `type` field selects from."""

from __future__ import annotations

from typing import Annotated, get_args

from pydantic import BaseModel, Field

from journeys.definition.followups import FollowUp
from journeys.definition.steps.crm import CreateActivity, CreateRequest, CreateSale, RunScript
from journeys.definition.steps.flow import Branch, End, Split
from journeys.definition.steps.messaging import Notify, SendEmail, SendSms
from journeys.definition.steps.profile import (
    AddToProject,
    AddToSelection,
    RemoveFromProject,
    RemoveFromSelection,
    UpdateContact,
)
from journeys.definition.steps.timing import Wait, WaitForEvent

Step = Annotated[
    SendEmail
    | Wait
    | WaitForEvent
    | Branch
    | Split
    | UpdateContact
    | AddToSelection
    | RemoveFromSelection
    | AddToProject
    | RemoveFromProject
    | CreateActivity
    | CreateRequest
    | CreateSale
    | RunScript
    | Notify
    | SendSms
    | End,
    Field(discriminator="type"),
]

# Each step type's model, by its `type` (derived from the union: one place to add a kind).
STEP_KINDS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(Step)[0])
}

# A follow-up holds steps of any kind, messages with follow-ups of their own included.
FollowUp.model_rebuild(_types_namespace={"Step": Step})
SendEmail.model_rebuild()
SendSms.model_rebuild()

__all__ = [
    "STEP_KINDS",
    "AddToProject",
    "AddToSelection",
    "Branch",
    "CreateActivity",
    "CreateRequest",
    "CreateSale",
    "End",
    "Notify",
    "RemoveFromProject",
    "RemoveFromSelection",
    "RunScript",
    "SendEmail",
    "SendSms",
    "Split",
    "Step",
    "UpdateContact",
    "Wait",
    "WaitForEvent",
]
