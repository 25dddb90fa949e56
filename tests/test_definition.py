"""Journey definitions: what publishing accepts and the messages for what it refuses."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from journeys.definition import JourneyDefinition, definition_problems, parse_duration
from journeys.definition.journey import QuietHours
from journeys.templates import template_problems

CONTRACT: dict[str, Any] = {
    "key": "welcome",
    "name": "Welcome",
    "entry": {"type": "api"},
    "start": "mail1",
    "steps": {
        "mail1": {
            "type": "send_email",
            "subject": "Hi {{ contact.first_name }}",
            "html": '<p>See <a href="https://example.com/pricing">pricing</a></p>',
            "next": "wait_click",
        },
        "wait_click": {
            "type": "wait_for_event",
            "event": "clicked",
            "message": "mail1",
            "timeout": "P3D",
            "on_event": "mail2",
            "on_timeout": "mark_cold",
        },
        "mail2": {
            "type": "send_email",
            "subject": "Thanks for looking",
            "html": "<p>Call us</p>",
            "next": "done",
        },
        "mark_cold": {"type": "update_contact", "set": {"cold": True}, "next": "done"},
        "done": {"type": "end"},
    },
}


def valid_definition(key: str = "welcome") -> dict[str, Any]:
    return {**copy.deepcopy(CONTRACT), "key": key}


def problems_of(data: dict[str, Any]) -> list[str]:
    defn = JourneyDefinition.model_validate(data)
    return [msg for _, msg in definition_problems(defn) + template_problems(defn)]


def test_the_contract_example_is_valid_and_round_trips() -> None:
    defn = JourneyDefinition.model_validate(CONTRACT)
    assert definition_problems(defn) == [] and template_problems(defn) == []
    dumped = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert JourneyDefinition.model_validate(dumped) == defn


def test_dangling_edge_names_step_and_target() -> None:
    data = valid_definition()
    data["steps"]["mail2"]["next"] = "finish"
    assert problems_of(data) == ["step 'mail2': next 'finish' is not a step of this journey"]


def test_unreachable_step_is_named() -> None:
    data = valid_definition()
    data["steps"]["orphan"] = {"type": "end"}
    assert problems_of(data) == ["step 'orphan' cannot be reached from start 'mail1'"]


def test_loop_without_wait_is_refused_and_loop_with_wait_accepted() -> None:
    data = valid_definition()
    data["steps"]["mark_cold"]["next"] = "again"
    data["steps"]["again"] = {"type": "update_contact", "set": {"n": 1}, "next": "mark_cold"}
    (msg,) = problems_of(data)
    assert "loop without a wait" in msg and "again" in msg and "mark_cold" in msg

    data["steps"]["again"] = {"type": "wait", "duration": "P1D", "next": "mark_cold"}
    assert problems_of(data) == []


def test_branch_needs_sent_message_and_field_conditions() -> None:
    data = valid_definition()
    data["steps"]["mark_cold"] = {
        "type": "branch",
        "if": {
            "all": [
                {"field": "plan", "op": "eq", "value": "pro"},
                {"not": {"message": "mark_cold", "event": "opened"}},
            ]
        },
        "then": "done",
        "else": "done",
    }
    assert problems_of(data) == ["step 'mark_cold': if 'mark_cold' is not a send_email step"]


def test_wait_for_event_on_a_step_that_sends_nothing() -> None:
    data = valid_definition()
    data["steps"]["wait_click"]["message"] = "mark_cold"
    assert problems_of(data) == ["step 'wait_click': message 'mark_cold' is not a send_email step"]
    data["steps"]["wait_click"].pop("message")
    assert problems_of(data) == ["step 'wait_click': waiting for 'clicked' needs the message step"]


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"mail2": {"type": "send_fax", "next": "done"}}, ("steps", "mail2")),
        (
            {"mark_cold": {"type": "update_contact", "set": {"Bad Field": 1}, "next": "done"}},
            ("steps", "mark_cold", "update_contact", "set", "Bad Field"),
        ),
        (
            {"mark_cold": {"type": "wait", "duration": "3 days", "next": "done"}},
            ("steps", "mark_cold", "wait", "duration"),
        ),
        (
            {"mail2": {"type": "send_email", "subject": "x", "html": "y"}},
            ("steps", "mail2", "send_email", "next"),
        ),
        ({"done": {"type": "end", "colour": "red"}}, ("steps", "done", "end", "colour")),
    ],
)
def test_field_level_errors_point_at_the_step(
    patch: dict[str, Any], where: tuple[str, ...]
) -> None:
    data = valid_definition()
    data["steps"].update(patch)
    with pytest.raises(ValidationError) as info:
        JourneyDefinition.model_validate(data)
    assert tuple(info.value.errors()[0]["loc"][: len(where)]) == where


def test_read_only_fields_cannot_be_set() -> None:
    data = valid_definition()
    data["steps"]["mark_cold"]["set"] = {"external_id": "x"}
    assert problems_of(data) == ["step 'mark_cold': field 'external_id' cannot be changed"]


def test_template_syntax_errors_name_step_and_part() -> None:
    data = valid_definition()
    data["steps"]["mail2"]["html"] = "<p>{% if contact.plan %}pro</p>"
    (msg,) = problems_of(data)
    assert msg.startswith("step 'mail2': html template:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT10M", timedelta(minutes=10)),
        ("P3D", timedelta(days=3)),
        ("P2Y", timedelta(days=730)),
        ("P1W", timedelta(days=7)),
        ("P1DT12H", timedelta(days=1, hours=12)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "3 days", "P0D", "-P1D", "P1.5D"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_json_schema_is_served_shape() -> None:
    schema = JourneyDefinition.model_json_schema(by_alias=True)
    kinds = {
        v["properties"]["type"]["const"]
        for k, v in schema["$defs"].items()
        if "type" in v.get("properties", {}) and "const" in v["properties"]["type"]
    }
    assert {"send_email", "wait", "wait_for_event", "branch", "update_contact", "end"} <= kinds


def with_step(step: dict[str, Any], **journey_fields: Any) -> dict[str, Any]:
    """The contract journey with `step` as `x` between mail2 and done."""
    data = valid_definition()
    data["steps"]["mail2"]["next"] = "x"
    data["steps"]["x"] = step if step["type"] == "split" else {**step, "next": "done"}
    return {**data, **journey_fields}


def refusal(step: dict[str, Any], **journey_fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        JourneyDefinition.model_validate(with_step(step, **journey_fields))
    return " | ".join(str(e["msg"]) for e in info.value.errors())


@pytest.mark.parametrize(
    ("step", "says"),
    [
        ({"type": "wait"}, "give duration, until, until_field or at"),
        (
            {"type": "wait", "duration": "P1D", "until": "2027-01-01T00:00:00Z"},
            "give one of duration, until and until_field",
        ),
        ({"type": "wait", "until": "2027-01-01T00:00:00"}, "timezone"),
        ({"type": "wait", "duration": "P1D", "offset": "-P1D"}, "apply to until_field"),
        ({"type": "wait", "duration": "P1D", "weekdays": ["mon"]}, "weekdays applies"),
        ({"type": "wait", "at": "25:00"}, "pattern"),
        ({"type": "wait", "at": "09:00", "weekdays": ["monday"]}, "'mon'"),
        ({"type": "wait", "until_field": "birthday", "offset": "-P1X"}, "not an ISO-8601"),
        ({"type": "update_contact"}, "give 'set', 'ops' or both"),
        (
            {
                "type": "update_contact",
                "ops": [{"field": "score", "op": "increment", "value": "5"}],
            },
            "'increment' needs a number",
        ),
        ({"type": "update_contact", "ops": [{"field": "tags", "op": "append"}]}, "needs a value"),
        (
            {"type": "update_contact", "ops": [{"field": "seen", "op": "set_now", "value": 1}]},
            "takes no value",
        ),
        ({"type": "send_sms", "text": "hi", "sender": "A name far too long"}, "pattern"),
        ({"type": "send_sms", "text": "hi", "if_no_phone": "fail"}, "'skip' or 'exit'"),
        ({"type": "notify", "to": "not a user!", "subject": "s", "body": "b"}, "pattern"),
        ({"type": "create_activity", "title": "t", "activity_type": "lunch"}, "'call'"),
        (
            {
                "type": "create_activity",
                "title": "t",
                "activity_type": "call",
                "due_in": "P1D",
                "first_free_slot": {"duration": "PT30M"},
            },
            "not both",
        ),
        ({"type": "create_sale", "title": "t", "amount": -1}, "greater than or equal to 0"),
        ({"type": "create_sale", "title": "t", "amount": 1, "currency": "euro"}, "pattern"),
        ({"type": "run_script", "url": "ftp://example.com/x"}, "URL scheme"),
        ({"type": "split", "branches": [{"percent": 100, "next": "done"}]}, "at least 2"),
    ],
)
def test_step_shapes_that_are_refused(step: dict[str, Any], says: str) -> None:
    assert says in refusal(step)


def test_journey_level_rules_that_are_refused() -> None:
    with pytest.raises(ValidationError, match="exactly when the policy is 'after'"):
        JourneyDefinition.model_validate({**valid_definition(), "reentry": {"policy": "after"}})
    with pytest.raises(ValidationError, match="entry"):
        JourneyDefinition.model_validate({**valid_definition(), "entry": {"type": "event"}})
    for quiet, says in (
        ({"start": "21:00", "end": "21:00"}, "another time than they start"),
        ({"start": "9pm", "end": "08:00"}, "quiet_hours.start"),
        ({"start": "21:00"}, "quiet_hours.end"),
    ):
        with pytest.raises(ValidationError, match=says):
            JourneyDefinition.model_validate({**valid_definition(), "quiet_hours": quiet})
    quiet = {"start": "21:00", "end": "08:00"}
    assert JourneyDefinition.model_validate(
        {**valid_definition(), "quiet_hours": quiet}
    ).quiet_hours == QuietHours(**quiet)


def test_graph_checks_of_the_new_kinds() -> None:
    split = {
        "type": "split",
        "branches": [{"percent": 70, "next": "done"}, {"percent": 20, "next": "nowhere"}],
    }
    assert problems_of(with_step(split)) == [
        "step 'x': 20% 'nowhere' is not a step of this journey",
        "step 'x': percentages add up to 90, not 100",
    ]
    ops = {
        "type": "update_contact",
        "set": {"score": 1},
        "ops": [
            {"field": "score", "op": "increment", "value": 1},
            {"field": "first_name", "op": "increment", "value": 1},
            {"field": "id", "op": "clear"},
        ],
    }
    assert problems_of(with_step(ops)) == [
        "step 'x': field 'score' is changed twice in this step",
        "step 'x': 'increment' does not apply to text field 'first_name'",
        "step 'x': field 'id' cannot be changed",
    ]
    auto = {"type": "create_request", "title": "t", "owner": {"kind": "auto"}}
    assert problems_of(with_step(auto)) == ["step 'x': automatic assignment needs a category"]
    bad_template = {"type": "send_sms", "text": "Hi {{ contact.first_name"}
    assert problems_of(with_step(bad_template))[0].startswith("step 'x': text template:")
    exit_ref = {"exit_if": {"message": "wait_click", "event": "clicked"}}
    assert problems_of(with_step({"type": "wait", "duration": "P1D"}, **exit_ref)) == [
        "exit_if: message 'wait_click' is not a send_email step"
    ]
