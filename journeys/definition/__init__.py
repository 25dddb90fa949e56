"""The journey definition format: what a marketer publishes.

A journey is a graph of steps with one entry point (`start`). Each step kind is
one model in `steps/<family>.py` (which states its own edges and checks) and
one handler in `workflows/steps/<family>.py`; the `type` field selects the
model. The package is free of side effects because the workflow sandbox
imports it. The names most callers need are re-exported here.
"""

from journeys.definition.common import (
    CONTACT_COLUMNS,
    FIELD_NAME_PATTERN,
    KEY_PATTERN,
    READ_ONLY_FIELDS,
    Problem,
    parse_duration,
)
from journeys.definition.conditions import (
    AllOf,
    AnyOf,
    Condition,
    FieldIs,
    MessageWas,
    NotOf,
    condition_parts,
)
from journeys.definition.graph import definition_problems, successors
from journeys.definition.journey import JourneyDefinition
from journeys.definition.steps import (
    AddToProject,
    AddToSelection,
    Branch,
    CreateActivity,
    CreateRequest,
    CreateSale,
    End,
    Notify,
    RemoveFromProject,
    RemoveFromSelection,
    RunScript,
    SendEmail,
    SendSms,
    Split,
    Step,
    UpdateContact,
    Wait,
    WaitForEvent,
)

__all__ = [
    "CONTACT_COLUMNS",
    "FIELD_NAME_PATTERN",
    "KEY_PATTERN",
    "READ_ONLY_FIELDS",
    "AddToProject",
    "AddToSelection",
    "AllOf",
    "AnyOf",
    "Branch",
    "Condition",
    "CreateActivity",
    "CreateRequest",
    "CreateSale",
    "End",
    "FieldIs",
    "JourneyDefinition",
    "MessageWas",
    "NotOf",
    "Notify",
    "Problem",
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
    "condition_parts",
    "definition_problems",
    "parse_duration",
    "successors",
]
