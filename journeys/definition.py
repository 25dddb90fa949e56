"""The journey definition format: what a marketer publishes.

A journey is a graph of steps with one entry point (`start`). Each step kind is
one pydantic model here and one handler in `workflows/steps.py`; the `type`
field selects the model. The module is free of side effects because the
workflow sandbox imports it.

Structural checks that pydantic cannot express per field (dangling edges,
unreachable steps, loops without a wait, references to messages) live in
`definition_problems`, which returns every problem with the location of the
offending step so the API can report them all at once.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field

from journeys.text import StorableModel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

# Profile columns a journey may read and write; anything else is a free field.
CONTACT_COLUMNS = ("email", "phone", "first_name", "last_name", "time_zone")
# Fields that identify a contact and are never written by a journey.
READ_ONLY_FIELDS = ("id", "external_id", "created_at", "updated_at", "unsubscribed_at")

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
# A calendar year or month has no fixed length; waits use these fixed lengths
# so that a duration means the same thing in every workflow replay.
_UNIT_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


def parse_duration(text: str) -> timedelta:
    """An ISO-8601 duration such as `PT10M`, `P3D` or `P2Y` as a timedelta."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT10M, P3D or P2Y")
    seconds = sum(int(v) * _UNIT_SECONDS[k] for k, v in match.groupdict().items() if v)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


IsoDuration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(description="ISO-8601 duration, e.g. PT10M, P3D, P2Y", examples=["P3D"]),
]
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]
FieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]


class _Strict(StorableModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# --- conditions -------------------------------------------------------------------------

Operator = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "not_exists"
]


class FieldIs(_Strict):
    """Compare a profile field: `{"field": "plan", "op": "eq", "value": "pro"}`."""

    field: FieldName
    op: Operator = "eq"
    value: Any = None


class MessageWas(_Strict):
    """What happened to a message this journey sent: `{"message": "mail1", "event": "clicked"}`."""

    message: StepId
    event: Literal["sent", "opened", "clicked"]
    link: str | None = Field(default=None, description="only clicks on this URL count")


class AllOf(_Strict):
    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    not_: Condition = Field(alias="not")


Condition = FieldIs | MessageWas | AllOf | AnyOf | NotOf
for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


def condition_parts(cond: Condition) -> list[FieldIs | MessageWas]:
    """The leaves of a condition tree."""
    if isinstance(cond, AllOf):
        return [leaf for c in cond.all for leaf in condition_parts(c)]
    if isinstance(cond, AnyOf):
        return [leaf for c in cond.any for leaf in condition_parts(c)]
    if isinstance(cond, NotOf):
        return condition_parts(cond.not_)
    return [cond]


# --- steps -------------------------------------------------------------------------------


class _Step(_Strict):
    title: str | None = Field(default=None, description="shown in the web UI and graphs")


class SendEmail(_Step):
    """Render the templates with the contact's fields and send one tracked e-mail."""

    type: Literal["send_email"]
    subject: str = Field(min_length=1)
    html: str = Field(min_length=1)
    text: str | None = Field(
        default=None, description="plain-text part; derived from html if absent"
    )
    sender: str | None = Field(
        default=None, description="From address; the server default if absent"
    )
    next: StepId


class Wait(_Step):
    """Sleep for a fixed duration (minutes up to years)."""

    type: Literal["wait"]
    duration: IsoDuration
    next: StepId


class WaitForEvent(_Step):
    """Wait until a message is opened or clicked, or a named event arrives; else time out."""

    type: Literal["wait_for_event"]
    event: Literal["opened", "clicked", "custom"]
    message: StepId | None = Field(default=None, description="the send_email step (opened/clicked)")
    link: str | None = Field(default=None, description="only a click on this URL counts")
    name: str | None = Field(default=None, description="the event name (custom)")
    timeout: IsoDuration
    on_event: StepId
    on_timeout: StepId


class Branch(_Step):
    """Go to `then` when the condition holds, else to `else`."""

    type: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: StepId
    else_: StepId = Field(alias="else")


class UpdateContact(_Step):
    """Set profile fields of the participant."""

    type: Literal["update_contact"]
    set: dict[FieldName, Any] = Field(min_length=1)
    next: StepId


class End(_Step):
    """The participant leaves the journey."""

    type: Literal["end"]


Step = Annotated[
    SendEmail | Wait | WaitForEvent | Branch | UpdateContact | End, Field(discriminator="type")
]
# Steps after which the workflow sleeps; a loop must pass through one of them.
WAITING_STEPS = (Wait, WaitForEvent)


class ApiEntry(_Strict):
    """Participants are enrolled through `POST /journeys/{key}/enrolments`."""

    type: Literal["api"]


Entry = Annotated[ApiEntry, Field(discriminator="type")]


class JourneyDefinition(_Strict):
    key: str = Field(pattern=KEY_PATTERN, description="stable id of the journey, used in URLs")
    name: str = Field(min_length=1, max_length=200)
    entry: Entry
    start: StepId
    steps: dict[StepId, Step] = Field(min_length=1)


def successors(step: Any) -> dict[str, str]:
    """The outgoing edges of a step as {field name: target step id}."""
    edges: dict[str, str] = {}
    for name in ("next", "then", "else_", "on_event", "on_timeout"):
        target = getattr(step, name, None)
        if target is not None:
            edges["else" if name == "else_" else name] = target
    return edges


Problem = tuple[tuple[str | int, ...], str]


def definition_problems(defn: JourneyDefinition) -> list[Problem]:
    """Every graph-level problem of a definition as (location, message)."""
    problems: list[Problem] = []
    steps = defn.steps
    if defn.start not in steps:
        problems.append((("start",), f"start step '{defn.start}' is not a step of this journey"))
    for sid, step in steps.items():
        for edge, target in successors(step).items():
            if target not in steps:
                problems.append(
                    (
                        ("steps", sid, edge),
                        f"step '{sid}': {edge} '{target}' is not a step of this journey",
                    )
                )
        problems.extend(_step_problems(sid, step, steps))
    if problems:
        return problems
    reachable = _reachable(defn.start, steps)
    for sid in steps:
        if sid not in reachable:
            problems.append(
                (("steps", sid), f"step '{sid}' cannot be reached from start '{defn.start}'")
            )
    cycle = _loop_without_wait(steps)
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(
            (("steps", cycle[0]), f"step '{cycle[0]}' is on a loop without a wait: {path}")
        )
    return problems


def _step_problems(sid: str, step: Any, steps: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []

    def message_ref(field: str, ref: str | None) -> None:
        if ref is not None and not isinstance(steps.get(ref), SendEmail):
            problems.append(
                (("steps", sid, field), f"step '{sid}': {field} '{ref}' is not a send_email step")
            )

    if isinstance(step, WaitForEvent):
        if step.event in ("opened", "clicked"):
            if step.message is None:
                problems.append(
                    (
                        ("steps", sid, "message"),
                        f"step '{sid}': waiting for '{step.event}' needs the message step",
                    )
                )
            message_ref("message", step.message)
            if step.link is not None and step.event != "clicked":
                problems.append(
                    (("steps", sid, "link"), f"step '{sid}': link only applies to clicked")
                )
        elif not step.name:
            problems.append((("steps", sid, "name"), f"step '{sid}': a custom event needs a name"))
    elif isinstance(step, Branch):
        for leaf in condition_parts(step.if_):
            if isinstance(leaf, MessageWas):
                message_ref("if", leaf.message)
    elif isinstance(step, UpdateContact):
        for name in step.set:
            if name in READ_ONLY_FIELDS:
                problems.append(
                    (("steps", sid, "set", name), f"step '{sid}': field '{name}' cannot be changed")
                )
    return problems


def _reachable(start: str, steps: dict[str, Any]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in successors(steps[todo.pop()]).values():
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _loop_without_wait(steps: dict[str, Any]) -> list[str] | None:
    """A cycle among steps that do not wait, which would spin without ever sleeping."""
    busy = {sid for sid, step in steps.items() if not isinstance(step, WAITING_STEPS)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        state[sid] = 1
        path.append(sid)
        for target in successors(steps[sid]).values():
            if target not in busy:
                continue
            if state.get(target) == 1:
                return path[path.index(target) :]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[sid] = 2
        return None

    for sid in sorted(busy):
        if sid not in state and (found := visit(sid)):
            return found
    return None
