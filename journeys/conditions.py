"""Evaluate branch conditions. Pure and deterministic: runs inside workflows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from journeys.definition import (
    AllOf,
    AnyOf,
    Condition,
    FieldIs,
    MessageWas,
    NotOf,
    condition_parts,
)
from journeys.definition.conditions import (
    Anniversary,
    InProject,
    InSelection,
    Received,
    RecordFieldIs,
    StoredFact,
)
from journeys.models import JourneyState

# Whether a clicked URL (None: not a click) is the link a condition names.
LinkMatch = Callable[[str | None, str], bool]


def exactly(clicked: str | None, wanted: str) -> bool:
    """The matching of runs before `same_link` (workflows/journey.py `links_match`)."""
    return clicked == wanted


def evaluate(
    cond: Condition,
    fields: Mapping[str, Any],
    state: JourneyState,
    memberships: Mapping[str, bool] | None = None,
    links: LinkMatch = exactly,
) -> bool:
    """Whether `cond` holds for a profile, its stored facts (see `fact_key`)
    and what happened in the journey so far. A clicked link is the one a condition
    names by `links`: a run passes `links_match` (`same_link`, guarded by a patch)."""
    if isinstance(cond, AllOf):
        return all(evaluate(c, fields, state, memberships, links) for c in cond.all)
    if isinstance(cond, AnyOf):
        return any(evaluate(c, fields, state, memberships, links) for c in cond.any)
    if isinstance(cond, NotOf):
        return not evaluate(cond.not_, fields, state, memberships, links)
    if isinstance(cond, MessageWas):
        return message_was(cond, state, links)
    if isinstance(cond, STORED_FACTS):
        return bool((memberships or {}).get(fact_key(cond)))
    if isinstance(cond, RecordFieldIs):
        # A journey's definition refuses it (`record_field_problems`): a run is about a
        # contact, and there is no record here to ask about.
        return False
    return field_is(cond, fields)


STORED_FACTS = (InSelection, InProject, Received, Anniversary)


def fact_key(cond: StoredFact) -> str:
    """How a contact load asks for a leaf the database answers, and returns the answer:
    `selection:vip`, `project:seminar`, `anniversary:birthday`, `received:<the leaf as
    JSON>`."""
    if isinstance(cond, InSelection):
        return f"selection:{cond.selection}"
    if isinstance(cond, InProject):
        return f"project:{cond.project}"
    if isinstance(cond, Anniversary):
        return f"anniversary:{cond.anniversary}"
    return "received:" + cond.model_dump_json(exclude_none=True)


def facts_read(cond: Condition) -> list[str]:
    """The stored facts (memberships, message history, anniversaries) a condition asks
    about, as `fact_key`s."""
    return sorted(
        {fact_key(leaf) for leaf in condition_parts(cond) if isinstance(leaf, STORED_FACTS)}
    )


def message_was(cond: MessageWas, state: JourneyState, links: LinkMatch = exactly) -> bool:
    if cond.event == "sent":
        return cond.message in state.sent
    # Runs continued-as-new before message_ids existed carry only `sent`.
    message_id = state.message_ids.get(cond.message) or state.sent.get(cond.message)
    if message_id is None:
        return False
    return any(
        e.message_id == message_id
        and e.kind == cond.event
        and (cond.link is None or links(e.url, cond.link))
        and (cond.kinds is None or e.error in cond.kinds)
        for e in state.message_events
    )


def field_is(cond: FieldIs, fields: Mapping[str, Any]) -> bool:
    value = fields.get(cond.field)
    op, expected = cond.op, cond.value
    if op == "exists":
        return value is not None and value != ""
    if op == "not_exists":
        return value is None or value == ""
    if op == "eq":
        return bool(value == expected)
    if op == "ne":
        return bool(value != expected)
    if op == "in":
        return isinstance(expected, list) and value in expected
    if op == "not_in":
        return isinstance(expected, list) and value not in expected
    if op == "contains":
        if isinstance(value, str):  # a substring; a list is never inside a text
            return isinstance(expected, str) and expected in value
        return isinstance(value, list) and expected in value
    if value is None or expected is None:
        return False
    try:
        if op == "gt":
            return bool(value > expected)
        if op == "gte":
            return bool(value >= expected)
        if op == "lt":
            return bool(value < expected)
        return bool(value <= expected)
    except TypeError:  # comparing e.g. a string field with a number: not true
        return False


def needs_profile(cond: Condition) -> bool:
    """Whether the condition reads the profile or memberships (and so needs a fresh load)."""
    return any(not isinstance(leaf, MessageWas) for leaf in condition_parts(cond))
