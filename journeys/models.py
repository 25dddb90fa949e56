"""Inputs, outputs and signals shared by the API, the workflows and the activities.

Side-effect free: the workflow sandbox imports this module. Every workflow and
activity takes exactly one of these models, so fields can be added later
without breaking running histories.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from journeys.definition import Condition, JourneyDefinition
from journeys.definition.common import DeliveryErrorKind, MessageEventName

TASK_QUEUE = "journeys"

# Search attributes (all Keyword) that make a participant findable in the web UI.
SA_JOURNEY = "JourneyKey"
SA_VERSION = "JourneyVersion"
SA_PARTICIPANT = "JourneyParticipant"
SA_STEP = "JourneyStep"
SA_STATUS = "JourneyStatus"
# Only on follow-up runs: the rule's key and the message step it hangs on.
SA_FOLLOW_UP = "JourneyFollowUp"
SA_MESSAGE_STEP = "JourneyMessageStep"
# Every step a run has been at (a KeywordList): the console's "passed" counts.
SA_STEPS_TAKEN = "JourneyStepsTaken"
SEARCH_ATTRIBUTES = (
    SA_JOURNEY,
    SA_VERSION,
    SA_PARTICIPANT,
    SA_STEP,
    SA_STATUS,
    SA_FOLLOW_UP,
    SA_MESSAGE_STEP,
    SA_STEPS_TAKEN,
)
# The type each is registered with in the namespace; the others are Keyword.
SEARCH_ATTRIBUTE_TYPES = {name: "Keyword" for name in SEARCH_ATTRIBUTES} | {
    SA_STEPS_TAKEN: "KeywordList"
}
STEPS_TAKEN_KEY = SearchAttributeKey.for_keyword_list(SA_STEPS_TAKEN)
# Temporal refuses a search attribute value over 2,048 bytes, counted with the
# payload's metadata (about 50 bytes for a KeywordList), and terminates the run that
# asked. What a run shows of its steps stays within this many bytes of JSON.
STEPS_TAKEN_BUDGET = 1_900
_TOKEN_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def step_token(step_id: str) -> str:
    """A step id in six characters, for a run whose ids do not fit the budget: a
    digit and five more, so it is never a step id (those start with a letter), and
    the same in every version of the journey (it hashes the id). 200 steps take
    1,801 bytes."""
    number = int.from_bytes(hashlib.sha256(step_id.encode()).digest()[:8], "big")
    chars = [str(number % 10)]
    number //= 10
    for _ in range(5):
        number, digit = divmod(number, 36)
        chars.append(_TOKEN_DIGITS[digit])
    return "".join(chars)


def _json_size(values: list[str]) -> int:
    return len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())


def shown_steps_taken(steps: set[str]) -> list[str]:
    """What the `JourneyStepsTaken` attribute holds for these steps: their ids while
    they fit the budget, else their tokens (as many as fit: only a definition from
    before the step limit has more). Queries ask for both (`step_taken_values`)."""
    ids = sorted(steps)
    if _json_size(ids) <= STEPS_TAKEN_BUDGET:
        return ids
    tokens = sorted(step_token(step) for step in steps)
    # 9 bytes a token, the last without its comma, and the brackets
    fitting = (STEPS_TAKEN_BUDGET - 1) // 9
    return tokens[:fitting]


def step_taken_values(step_id: str) -> tuple[str, str]:
    """The values by which `JourneyStepsTaken` may show a step: its id or its token."""
    return step_id, step_token(step_id)


def run_search_attributes(
    journey_key: str, version: int, contact_id: str, start: str, **follow_up: str
) -> TypedSearchAttributes:
    """What a new run is found by in Temporal visibility: a journey run's, or with
    `follow_up` (SA name -> value) a follow-up run's."""
    kw = SearchAttributeKey.for_keyword
    return TypedSearchAttributes(
        [
            SearchAttributePair(kw(SA_JOURNEY), journey_key),
            SearchAttributePair(kw(SA_VERSION), str(version)),
            SearchAttributePair(kw(SA_PARTICIPANT), contact_id),
            SearchAttributePair(kw(SA_STEP), start),
            SearchAttributePair(kw(SA_STATUS), "running"),
            SearchAttributePair(STEPS_TAKEN_KEY, [start]),
            *(SearchAttributePair(kw(name), value) for name, value in follow_up.items()),
        ]
    )


def journey_workflow_id(journey_key: str, contact_id: str) -> str:
    """One workflow per (journey, participant); the contact's UUID, never an address."""
    return f"journey/{journey_key}/{contact_id}"


def follow_up_workflow_id(journey_key: str, message_id: str, key: str) -> str:
    """One run per (message, rule): a second trigger finds it taken, also once it ended."""
    return f"followup/{journey_key}/{message_id}/{key}"


class MessageEvent(BaseModel):
    """Signal: something happened to a message of this participant: opened, clicked,
    a delivery error, an unsubscribe."""

    id: int | None = Field(default=None, description="the stored event; a re-delivery is ignored")
    message_id: str
    step: str
    kind: MessageEventName
    url: str | None = None
    error: DeliveryErrorKind | None = Field(default=None, description="of a delivery_error")
    at: datetime


class ContactEvent(BaseModel):
    """Signal: a named event was posted for the contact (`POST /events`)."""

    id: int | None = Field(default=None, description="the stored event; a re-delivery is ignored")
    name: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class Removal(BaseModel):
    """Signal: take the participant out of the journey (`DELETE .../participants/{id}`)."""

    reason: str = "removed through the API"


class ProfileChange(BaseModel):
    """Signal: the contact's profile changed (`POST /contacts`); exit_if may hold now."""

    fields: list[str] = Field(default_factory=list, description="the names that changed")


class StepVisit(BaseModel):
    step: str
    at: datetime
    outcome: str | None = None


class JourneyState(BaseModel):
    """What a participant's run carries across continue-as-new."""

    current_step: str
    history: list[StepVisit] = Field(default_factory=list)
    sent: dict[str, str] = Field(default_factory=dict, description="send step -> message id")
    message_ids: dict[str, str] = Field(
        default_factory=dict, description="send step -> message id, sent or not"
    )
    message_events: list[MessageEvent] = Field(default_factory=list)
    contact_events: list[ContactEvent] = Field(default_factory=list)
    contact_events_dropped: int = Field(
        default=0, description="events dropped from the front of contact_events"
    )
    occurrences: dict[str, int] = Field(default_factory=dict)
    removal: str | None = Field(default=None, description="why the participant was removed")


class FollowUpRun(BaseModel):
    """What makes a run a follow-up: the message and rule it fired for, and what it
    does before its first step (wait, then check run_if)."""

    message_id: str
    path: list[str] = Field(description="the message step's path, then the rule's key")
    key: str
    trigger: str
    wait: str = Field(description="ISO-8601 duration before the first step; PT0M: none")
    run_if: Condition | None = None


class JourneyInput(BaseModel):
    journey_key: str
    version: int
    contact_id: str
    definition: JourneyDefinition
    state: JourneyState | None = None
    follow_up: FollowUpRun | None = Field(default=None, description="set on follow-up runs")


ParticipantStatus = Literal["running", "completed", "exited", "removed", "skipped", "failed"]


class JourneyProgress(BaseModel):
    """Answer of the `progress` query and result of the workflow."""

    journey_key: str
    version: int
    status: ParticipantStatus
    current_step: str
    history: list[StepVisit]
    reason: str | None = Field(default=None, description="why it exited, was removed or failed")
    details: str | None = Field(
        default=None, description="the web UI's current details: where it is and why"
    )


# --- activities ---------------------------------------------------------------------------


class SendInput(BaseModel):
    """What every send carries: who, from which step, and its idempotency key."""

    idempotency_key: str
    workflow_id: str
    journey_key: str
    version: int
    contact_id: str
    step: str
    follow_up_path: list[str] | None = Field(
        default=None, description="the message step's path, when it has follow-ups"
    )
    record_id: str | None = Field(
        default=None, description="the record the message is about (`{{ record.* }}`)"
    )
    transactional: bool = Field(
        default=False,
        description="a code, a receipt: outside the frequency cap (neither held nor counted)",
    )
    recurring_key: str | None = Field(
        default=None, description="the recurring send the message belongs to"
    )


class SendEmailInput(SendInput):
    subject: str
    html: str
    text: str | None = None
    sender: str | None = None
    attachments: list[str] = Field(default_factory=list, description="file ids")


class NotifyInput(SendInput):
    to: str = Field(description="a user key or an e-mail address")
    subject: str
    body: str


class SendSmsInput(SendInput):
    sender: str | None = None
    text: str
    max_segments: int | None = Field(default=None, description="the step's; 10 if absent")


# The reason an SMS is skipped for a contact without a usable number.
NO_PHONE = "no phone number"


class SendResult(BaseModel):
    message_id: str = Field(description="empty when deferred: no message was written")
    status: Literal["sent", "skipped", "deferred"]
    reason: str | None = None
    until: datetime | None = Field(
        default=None, description="deferred: when the frequency cap lets the message go"
    )


class UpdateContactInput(BaseModel):
    contact_id: str
    journey_key: str
    step: str
    set: dict[str, Any] = Field(default_factory=dict)
    ops: list[dict[str, Any]] = Field(default_factory=list, description="{field, op, value}")
    idempotency_key: str | None = Field(
        default=None, description="absent in runs scheduled before keys existed"
    )


class JournalInput(BaseModel):
    """A line for the contact's dossier, written once per idempotency key."""

    contact_id: str
    kind: str
    title: str
    journey_key: str | None = None
    step: str | None = None
    idempotency_key: str


class LoadContactInput(BaseModel):
    contact_id: str
    memberships: list[str] = Field(
        default_factory=list,
        description="stored facts to look up (`journeys.conditions.fact_key`): "
        "`selection:<key>`, `project:<key>`, message history, anniversaries",
    )


class ContactSnapshot(BaseModel):
    """The profile as conditions see it: columns and free fields in one mapping."""

    fields: dict[str, Any]
    memberships: dict[str, bool] = Field(default_factory=dict)


class ResolveWaitInput(BaseModel):
    """A wait whose moment depends on the contact: its time zone or a date field."""

    contact_id: str
    step: str
    until_field: str | None = None
    anniversary: bool = False
    offset: str | None = None
    at: str | None = None
    weekdays: list[str] | None = None


class QuietHoursInput(BaseModel):
    """Whether the journey's quiet hours hold now for the contact, before a send."""

    contact_id: str
    step: str
    start: str
    end: str


class ResolvedWait(BaseModel):
    until: datetime | None = Field(default=None, description="UTC; None: move on at once")
    reason: str | None = Field(default=None, description="why there is no moment")


class CreateRecordInput(BaseModel):
    """An activity, request or sale to create for the participant."""

    idempotency_key: str
    kind: Literal["activity", "request", "sale"]
    contact_id: str
    journey_key: str
    step: str
    title: str = Field(description="a template over the contact's fields")
    record_type: str | None = None
    status: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    owner: dict[str, Any] = Field(description="{kind, user}: who gets the record")
    category: str | None = None
    due_in: str | None = None
    slot: str | None = Field(default=None, description="book the first free slot this long")


class CreatedRecord(BaseModel):
    id: str
    owner: str | None
    assigned_by: str
    due_at: datetime | None = None


class ScriptCallInput(BaseModel):
    """A run_script call: the contact's data is read when calling, not carried here."""

    idempotency_key: str
    url: str
    contact_id: str
    journey_key: str
    version: int
    step: str
    participant: str = Field(description="the journey run's workflow id")


class ScriptCallResult(BaseModel):
    status: Literal["succeeded", "failed"]
    response_status: int | None = None
    error: str | None = None


class MembershipInput(BaseModel):
    """Add the participant to, or remove it from, a selection or project."""

    idempotency_key: str
    contact_id: str
    journey_key: str
    step: str
    kind: Literal["selection", "project"]
    key: str
    add: bool


def operation_workflow_id(operation_id: str) -> str:
    return f"operation/{operation_id}"


class OperationInput(BaseModel):
    """A bulk operation (`journeys.store.operations`): the row holds what it works on."""

    operation_id: str


class OperationPage(BaseModel):
    """Where paging the targets stands: in the heartbeat, and at the end."""

    after: str | None = Field(default=None, description="the last contact done")
    done: int = 0
    counts: dict[str, int] = Field(default_factory=dict)


class FinishOperation(BaseModel):
    operation_id: str
    status: Literal["completed", "failed"]
    counts: dict[str, int] | None = None
    error: str | None = None


class OperationResult(BaseModel):
    status: Literal["completed", "failed"]
    total: int
    counts: dict[str, int]
    error: str | None = None


def entry_schedule_id(journey_key: str) -> str:
    """The Temporal Schedule of a journey's selection entry."""
    return f"entry/{journey_key}"


class EntryInput(BaseModel):
    """One run of a journey's selection entry."""

    journey_key: str


def recurring_schedule_id(key: str) -> str:
    """A recurring send's Temporal Schedule; its runs' workflow ids begin with it too."""
    return f"recurring/{key}"


# Workflows sending to many recipients from one run: the messages carry the run's id,
# but the run waits for no message event (the dispatcher does not signal it).
BULK_SENDER_PREFIXES = ("operation/", "recurring/")


class TesterMail(BaseModel):
    """A test mail now (R8): to internal testers, filled from a chosen record."""

    contact_ids: list[str]
    record_id: str | None = None


class RecurringRunInput(BaseModel):
    """One run of a recurring send, started by its schedule (or a test mail)."""

    key: str
    test: TesterMail | None = None


class OpenRun(BaseModel):
    key: str
    workflow_id: str
    run_id: str
    at: datetime = Field(description="the run's moment: its local day is the send's day")
    test: TesterMail | None = None


class RunPlan(BaseModel):
    run_id: str
    go: bool
    reason: str | None = None


class RunInput(BaseModel):
    run_id: str
    test: TesterMail | None = None


class RunProgress(BaseModel):
    """Where sending a run stands: in the heartbeat."""

    after: int = Field(default=-1, description="the last target (seq) done")


class FinishRun(BaseModel):
    run_id: str
    status: Literal["completed", "failed"]
    error: str | None = None


class RunResult(BaseModel):
    run_id: str
    status: str
    counts: dict[str, int] = Field(default_factory=dict)
    reason: str | None = None
