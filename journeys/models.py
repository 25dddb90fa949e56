"""Inputs, outputs and signals shared by the API, the workflows and the activities.

Side-effect free: the workflow sandbox imports this module. Every workflow and
activity takes exactly one of these models, so fields can be added later
without breaking running histories.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from journeys.definition import JourneyDefinition

TASK_QUEUE = "journeys"

# Search attributes (all Keyword) that make a participant findable in the web UI.
SA_JOURNEY = "JourneyKey"
SA_VERSION = "JourneyVersion"
SA_PARTICIPANT = "JourneyParticipant"
SA_STEP = "JourneyStep"
SA_STATUS = "JourneyStatus"
SEARCH_ATTRIBUTES = (SA_JOURNEY, SA_VERSION, SA_PARTICIPANT, SA_STEP, SA_STATUS)


def journey_workflow_id(journey_key: str, contact_id: str) -> str:
    """One workflow per (journey, participant); the contact's UUID, never an address."""
    return f"journey/{journey_key}/{contact_id}"


MessageEventKind = Literal["opened", "clicked"]


class MessageEvent(BaseModel):
    """Signal: a tracked message of this participant was opened or clicked."""

    message_id: str
    step: str
    kind: MessageEventKind
    url: str | None = None
    at: datetime


class ContactEvent(BaseModel):
    """Signal: a named event was posted for the contact (`POST /events`)."""

    id: int | None = Field(default=None, description="the stored event; a re-delivery is ignored")
    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class StepVisit(BaseModel):
    step: str
    at: datetime
    outcome: str | None = None


class JourneyState(BaseModel):
    """What a participant's run carries across continue-as-new."""

    current_step: str
    history: list[StepVisit] = Field(default_factory=list)
    sent: dict[str, str] = Field(default_factory=dict, description="send step -> message id")
    message_events: list[MessageEvent] = Field(default_factory=list)
    contact_events: list[ContactEvent] = Field(default_factory=list)
    occurrences: dict[str, int] = Field(default_factory=dict)


class JourneyInput(BaseModel):
    journey_key: str
    version: int
    contact_id: str
    definition: JourneyDefinition
    state: JourneyState | None = None


ParticipantStatus = Literal["running", "completed"]


class JourneyProgress(BaseModel):
    """Answer of the `progress` query and result of the workflow."""

    journey_key: str
    version: int
    status: ParticipantStatus
    current_step: str
    history: list[StepVisit]


# --- activities ---------------------------------------------------------------------------


class SendInput(BaseModel):
    """What every send carries: who, from which step, and its idempotency key."""

    idempotency_key: str
    workflow_id: str
    journey_key: str
    version: int
    contact_id: str
    step: str


class SendEmailInput(SendInput):
    subject: str
    html: str
    text: str | None = None
    sender: str | None = None


class SendResult(BaseModel):
    message_id: str
    status: Literal["sent", "skipped"]
    reason: str | None = None


class UpdateContactInput(BaseModel):
    contact_id: str
    journey_key: str
    step: str
    set: dict[str, Any]


class LoadContactInput(BaseModel):
    contact_id: str


class ContactSnapshot(BaseModel):
    """The profile as conditions see it: columns and free fields in one mapping."""

    fields: dict[str, Any]
