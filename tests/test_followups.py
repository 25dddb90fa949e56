"""Follow-ups: the definition (accepted shapes, problems placed on the rule), which
events fire which rules, and the runs on Temporal's time-skipping server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from journeys.definition import JourneyDefinition, definition_problems
from journeys.definition.followups import same_link
from journeys.definition.graph import duplicate_action_warnings
from journeys.followups import message_step, start_follow_up, triggered
from journeys.models import JourneyProgress, ResolvedWait
from journeys.store.journeys import PublishedJourney
from tests.builders import journey
from tests.test_workflow import Harness, harness, result

__all__ = ["harness"]  # the fixture, used by name

PRICING = "https://example.com/pricing"


def three_follow_ups() -> list[dict[str, Any]]:
    """The issue's example: a hot lead, a survey a week later, a bad address."""
    return [
        {
            "key": "hot",
            "on": "clicked",
            "link": PRICING,
            "wait": "PT0M",
            "start": "flag",
            "steps": {
                "flag": {
                    "type": "update_contact",
                    "ops": [{"field": "clicks", "op": "increment", "value": 1}],
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        },
        {
            "key": "survey",
            "on": "sent",
            "wait": "P7D",
            "run_if": {"not": {"field": "unsubscribed", "op": "eq", "value": True}},
            "start": "s",
            "steps": {
                "s": {
                    "type": "send_email",
                    "subject": "How was it?",
                    "html": "<p>Tell us</p>",
                    "next": "end",
                },
                "end": {"type": "end"},
            },
        },
        {
            "key": "bad",
            "on": "delivery_error",
            "kinds": ["hard_bounce", "complaint"],
            "wait": "PT0M",
            "start": "m",
            "steps": {
                "m": {"type": "update_contact", "set": {"needs_cleanup": True}, "next": "end"},
                "end": {"type": "end"},
            },
        },
    ]


def brochure(key: str, follow_ups: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return journey(
        key,
        name="Brochure",
        start="mail1",
        steps={
            "mail1": {
                "type": "send_email",
                "subject": "Our brochure",
                "html": f'<p>See <a href="{PRICING}">prices</a></p>',
                "follow_ups": three_follow_ups() if follow_ups is None else follow_ups,
                "next": "end",
            },
            "end": {"type": "end"},
        },
    )


def problems(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    return definition_problems(JourneyDefinition.model_validate(data))


# --- the definition --------------------------------------------------------------------------


def test_the_three_example_follow_ups_are_valid() -> None:
    assert problems(brochure("ok")) == []


def test_problems_are_placed_on_the_rule_and_its_steps() -> None:
    rules = three_follow_ups()
    rules[0]["steps"]["flag"]["next"] = "nowhere"
    rules[1]["link"] = PRICING
    rules[2]["run_if"] = {"message": "m", "event": "sent"}
    rules.append({**rules[2], "run_if": None})
    found = problems(brochure("bad", rules))
    assert (
        ("steps", "mail1", "follow_ups", 0, "steps", "flag", "next"),
        "step 'mail1', follow-up 'hot': step 'flag': next 'nowhere' is not a step of this journey",
    ) in found
    assert (
        ("steps", "mail1", "follow_ups", 1, "link"),
        "step 'mail1': follow-up 'survey': link only applies to on: clicked",
    ) in found
    assert any(loc == ("steps", "mail1", "follow_ups", 2, "run_if") for loc, _ in found)
    assert (
        ("steps", "mail1", "follow_ups", 3, "key"),
        "step 'mail1': follow-up key 'bad' twice",
    ) in found


def test_a_follow_up_that_waits_zero_or_years_and_nests() -> None:
    rules = three_follow_ups()
    rules[1]["wait"] = "P5Y"
    inner = rules[1]["steps"]["s"]
    inner["follow_ups"] = [
        {**three_follow_ups()[0], "steps": {"end": {"type": "end"}}, "start": "end"}
    ]
    defn = JourneyDefinition.model_validate(brochure("nested", rules))
    assert definition_problems(defn) == []
    assert message_step(defn, ["mail1", "survey", "s"]) is not None
    assert message_step(defn, ["mail1", "nope", "s"]) is None
    with pytest.raises(ValueError, match="not an ISO-8601 duration"):
        JourneyDefinition.model_validate(brochure("x", [{**rules[0], "wait": "soon"}]))


# --- which events fire which rules -----------------------------------------------------------


def fired(
    kind: str, *, url: str | None = None, error: str | None = None, days: int = 0
) -> list[str]:
    defn = JourneyDefinition.model_validate(brochure("t"))
    step = message_step(defn, ["mail1"])
    assert step is not None
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        rule.key
        for rule in triggered(
            step, kind, url=url, error=error, at=sent + timedelta(days=days), listening_since=sent
        )
    ]


def test_each_trigger_fires_its_rules_only() -> None:
    assert fired("sent") == ["survey"]
    assert fired("opened") == []  # the example has no rule on opens
    defn = JourneyDefinition.model_validate(brochure("o", [*three_follow_ups(), SEEN]))
    assert fired_on(defn, "opened", "") == ["seen"]
    assert fired("clicked", url="https://EXAMPLE.com/pricing?utm=x&c=42#top") == ["hot"]
    assert fired("clicked", url="https://example.com/pricing/other") == []
    assert fired("delivery_error", error="hard_bounce") == ["bad"]
    assert fired("delivery_error", error="soft_bounce") == []
    # After the listening window (30 days by default) events fire nothing.
    assert fired("clicked", url=PRICING, days=31) == []


def test_same_link_ignores_personalised_parts() -> None:
    assert same_link("https://example.com/p?u=1", "https://example.com/p")
    assert same_link("https://EXAMPLE.com/p#top", "https://example.com/p")
    assert not same_link("http://example.com/p", "https://example.com/p")
    assert not same_link(None, "https://example.com/p")
    # The link's own parameters must be there: another product is another link.
    assert same_link("https://shop.example/p?id=1&ref=c-9", "https://shop.example/p?id=1")
    assert not same_link("https://shop.example/p?id=2", "https://shop.example/p?id=1")
    assert not same_link("https://shop.example/p", "https://shop.example/p?id=1")
    # A click on a URL that cannot be read (a port that is no number) is no link.
    assert not same_link("https://example.com:port/p", "https://example.com/p")


# --- the runs ----------------------------------------------------------------------------------


def published(definition: dict[str, Any]) -> PublishedJourney:
    return PublishedJourney(
        key=definition["key"],
        name=definition["name"],
        version=1,
        published_at=datetime.now(UTC),
        definition=JourneyDefinition.model_validate(definition),
    )


def run_of(harness: Harness, workflow_id: str) -> WorkflowHandle[Any, JourneyProgress]:
    return harness.env.client.get_workflow_handle(workflow_id, result_type=JourneyProgress)


async def fire(
    harness: Harness, p: PublishedJourney, key: str, contact: uuid.UUID, message: uuid.UUID
) -> str:
    step = message_step(p.definition, ["mail1"])
    assert step is not None
    rule = next(r for r in step.follow_ups or [] if r.key == key)
    return await start_follow_up(
        harness.env.client, harness.task_queue, p, contact, message, ["mail1"], rule
    )


# The fourth trigger, beside the example's three.
SEEN = {
    "key": "seen",
    "on": "opened",
    "wait": "PT1H",
    "start": "mark",
    "steps": {
        "mark": {"type": "update_contact", "set": {"opened_brochure": True}, "next": "end"},
        "end": {"type": "end"},
    },
}


@pytest.mark.parametrize("key", ["hot", "survey", "bad", "seen"])
async def test_each_rule_runs_its_steps_after_its_wait(harness: Harness, key: str) -> None:
    p = published(brochure(f"fu-{key}", [*three_follow_ups(), SEEN]))
    before = await harness.env.get_current_time()
    workflow_id = await fire(harness, p, key, uuid.uuid4(), uuid.uuid4())
    # A run started elsewhere (the dispatcher) skips time only when told to.
    await harness.env.sleep(timedelta(days=7, minutes=1))
    progress = await result(run_of(harness, workflow_id))
    assert progress.status == "completed"
    (visit,) = [v for v in progress.history if v.step in ("s", "flag", "m", "mark")]
    if key == "survey":
        assert visit.at - before >= timedelta(days=7)
        assert [s.subject for s in harness.fakes.sent] == ["How was it?"]
    elif key == "seen":
        assert timedelta(hours=1) <= visit.at - before < timedelta(days=1)
    else:
        assert visit.at - before < timedelta(days=1) and harness.fakes.updates


async def test_a_follow_ups_mail_keeps_the_journeys_quiet_hours(harness: Harness) -> None:
    """The survey mail is due seven days after the trigger, in the contact's quiet
    hours: it waits for their end, as the journey's own mails do."""
    quiet = {"start": "21:00", "end": "08:00"}
    p = published({**brochure("fu-quiet"), "quiet_hours": quiet})
    before = await harness.env.get_current_time()
    harness.fakes.quiet_until = ResolvedWait(until=before + timedelta(days=7, hours=9))
    workflow_id = await fire(harness, p, "survey", uuid.uuid4(), uuid.uuid4())
    await harness.env.sleep(timedelta(days=7, hours=10))
    progress = await result(run_of(harness, workflow_id))
    assert [(q.step, q.start, q.end) for q in harness.fakes.quiet_asked] == [("s", *quiet.values())]
    assert [s.subject for s in harness.fakes.sent] == ["How was it?"]
    (after_send,) = [v for v in progress.history if v.step == "end"]
    assert after_send.at - before >= timedelta(days=7, hours=9)


async def test_a_five_year_wait_whose_run_if_turns_false_is_skipped(harness: Harness) -> None:
    rules = three_follow_ups()
    rules[1]["wait"] = "P5Y"
    p = published(brochure("fu-5y", rules))
    harness.fakes.profile = {"unsubscribed": False}
    workflow_id = await fire(harness, p, "survey", uuid.uuid4(), uuid.uuid4())
    handle = run_of(harness, workflow_id)
    await harness.env.sleep(timedelta(days=365))
    harness.fakes.profile = {"unsubscribed": True}  # meanwhile, the contact unsubscribes
    await harness.env.sleep(timedelta(days=4 * 366))
    progress = await result(handle)
    assert (progress.status, progress.reason) == (
        "skipped",
        "run_if no longer held when the wait was over",
    )
    assert harness.fakes.sent == []
    (line,) = harness.fakes.journal
    assert line.kind == "follow_up_skipped" and "survey" in line.title


async def test_a_rule_fires_once_per_message_even_after_its_run_ended(harness: Harness) -> None:
    p = published(brochure("fu-once"))
    contact, message = uuid.uuid4(), uuid.uuid4()
    first = await fire(harness, p, "hot", contact, message)
    await result(run_of(harness, first))
    again = await fire(harness, p, "hot", contact, message)  # a second click
    assert again == first
    assert len(harness.fakes.updates) == 1
    # Another message of the same step is another firing.
    other = await fire(harness, p, "hot", contact, uuid.uuid4())
    await result(run_of(harness, other))
    assert len(harness.fakes.updates) == 2


async def test_a_follow_up_fires_after_the_journey_ended(harness: Harness) -> None:
    p = published(brochure("fu-after"))
    contact = uuid.uuid4()
    handle = await harness.start(brochure("fu-after"), contact_id=contact)
    journey_progress = await result(handle)
    assert journey_progress.status == "completed"
    (sent,) = harness.fakes.sent
    assert sent.follow_up_path == ["mail1"]  # what the dispatcher finds the rules by
    workflow_id = await fire(harness, p, "hot", contact, uuid.uuid4())
    progress = await result(run_of(harness, workflow_id))
    assert progress.status == "completed" and [u.step for u in harness.fakes.updates] == ["flag"]
    described = await run_of(harness, workflow_id).describe()
    attributes = {pair.key.name: pair.value for pair in described.typed_search_attributes}
    assert attributes["JourneyFollowUp"] == "hot" and attributes["JourneyMessageStep"] == "mail1"
    assert attributes["JourneyParticipant"] == str(contact)


# --- link actions (A10) ------------------------------------------------------------------------


def with_link_actions(key: str) -> dict[str, Any]:
    definition = brochure(key, [])
    definition["steps"]["mail1"]["link_actions"] = {
        PRICING: [
            {"type": "add_to_selection", "selection": "hot"},
            {"type": "update_contact", "ops": [{"field": "clicks", "op": "increment", "value": 1}]},
        ]
    }
    return definition


def test_link_actions_are_a_follow_up_on_a_click_of_that_link() -> None:
    defn = JourneyDefinition.model_validate(with_link_actions("la"))
    assert definition_problems(defn) == []
    step = message_step(defn, ["mail1"])
    assert step is not None
    (rule,) = step.rules()
    assert (rule.key, rule.on, rule.link, rule.start) == ("link-1", "clicked", PRICING, "action1")
    assert [s.type for s in rule.steps.values()] == ["add_to_selection", "update_contact", "end"]
    assert fired_on(defn, "clicked", "https://example.com/pricing?x=1") == ["link-1"]
    assert fired_on(defn, "clicked", "https://example.com/other") == []


def fired_on(defn: JourneyDefinition, kind: str, url: str) -> list[str]:
    step = message_step(defn, ["mail1"])
    assert step is not None
    now = datetime.now(UTC)
    return [r.key for r in triggered(step, kind, url=url, error=None, at=now, listening_since=now)]


def test_publishing_warns_of_a_step_repeating_a_link_action() -> None:
    data = with_link_actions("warn")
    data["steps"]["mail1"]["next"] = "tag"
    data["steps"]["tag"] = {"type": "add_to_selection", "selection": "hot", "next": "end"}
    defn = JourneyDefinition.model_validate(data)
    assert definition_problems(defn) == []
    assert duplicate_action_warnings(defn) == [
        (
            ("steps", "tag"),
            "step 'tag' adds to selection 'hot', which the link action on "
            f"{PRICING} of step 'mail1' already does for whoever clicks it",
        )
    ]
    data["steps"]["tag"]["selection"] = "other"
    assert duplicate_action_warnings(JourneyDefinition.model_validate(data)) == []


def test_link_actions_refuse_steps_that_are_not_actions_and_reserved_keys() -> None:
    data = with_link_actions("bad-la")
    data["steps"]["mail1"]["link_actions"][PRICING].append({"type": "send_email"})
    with pytest.raises(ValueError, match="link_actions"):
        JourneyDefinition.model_validate(data)
    rules = three_follow_ups()
    rules[0]["key"] = "link-1"
    (problem,) = problems(brochure("reserved", rules))
    assert "name link actions" in problem[1]
