"""The step kinds and journey rules beyond the first five, on the time-skipping server.

Activities are the stand-ins of test_workflow; the real ones run in test_e2e_catalogue.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle

from journeys.models import ProfileChange, Removal, ResolvedWait
from tests.builders import journey, linear_journey, mail, wait
from tests.helpers import record_history
from tests.test_workflow import Harness, harness, result
from workflows.journey import JourneyWorkflow
from workflows.script import ScriptCallWorkflow
from workflows.steps.flow import split_bucket

__all__ = ["harness"]  # the fixture, used by name


async def at_step(handle: WorkflowHandle[Any, Any], step: str) -> None:
    for _ in range(200):
        progress = await handle.query(JourneyWorkflow.progress)
        if progress.history and progress.history[-1].step == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {step}: {progress}")


def ab_test(key: str) -> dict[str, Any]:
    return journey(
        key,
        steps={
            "ab": {
                "type": "split",
                "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
            },
            "a": {**mail("Variant A"), "next": "end"},
            "b": {**mail("Variant B"), "next": "end"},
            "end": {"type": "end"},
        },
    )


async def test_a_split_sends_each_participant_down_its_own_fixed_branch(harness: Harness) -> None:
    contacts = [uuid.uuid4() for _ in range(24)]
    handles = [await harness.start(ab_test("ab"), contact_id=c) for c in contacts]
    taken = {}
    for contact, handle in zip(contacts, handles, strict=True):
        progress = await result(handle)
        taken[contact] = progress.history[1].step
        expected = "a" if split_bucket("ab", str(contact), "ab") < 30 else "b"
        assert taken[contact] == expected
        assert (progress.history[0].outcome or "").startswith(
            f"branch {'1' if expected == 'a' else '2'}"
        )
    assert set(taken.values()) == {"a", "b"}
    # The same participant entering again takes the same branch.
    again = await result(await harness.start(ab_test("ab"), contact_id=contacts[0]))
    assert again.history[1].step == taken[contacts[0]]


async def test_wait_until_an_instant_and_a_past_instant_moves_on_at_once(
    harness: Harness,
) -> None:
    now = await harness.env.get_current_time()
    target = (now + timedelta(days=40)).replace(microsecond=0)
    handle = await harness.start(
        linear_journey(
            "until",
            "Until",
            ("past", {"type": "wait", "until": "2001-01-01T00:00:00Z"}),
            ("future", {"type": "wait", "until": target.isoformat()}),
        )
    )
    progress = await result(handle)
    visits = {v.step: v for v in progress.history}
    assert visits["past"].outcome == "the moment had passed"
    assert visits["future"].at - visits["past"].at < timedelta(seconds=5)
    assert target <= visits["end"].at < target + timedelta(minutes=1)


async def test_a_local_time_wait_sleeps_until_the_moment_the_activity_works_out(
    harness: Harness,
) -> None:
    now = await harness.env.get_current_time()
    moment = (now + timedelta(days=3, hours=5)).replace(microsecond=0)
    harness.fakes.next_moment = ResolvedWait(until=moment)
    handle = await harness.start(
        linear_journey(
            "weekday",
            "Weekday morning",
            ("morning", {"type": "wait", "at": "09:00", "weekdays": ["mon", "tue"]}),
        )
    )
    progress = await result(handle)
    asked = harness.fakes.resolved[-1]
    assert (asked.at, asked.weekdays, asked.until_field) == ("09:00", ["mon", "tue"], None)
    assert moment <= progress.history[-1].at < moment + timedelta(minutes=1)


async def test_an_empty_date_field_moves_on_and_says_why(harness: Harness) -> None:
    harness.fakes.next_moment = ResolvedWait(reason="field 'birthday' is empty")
    handle = await harness.start(
        linear_journey(
            "birthday",
            "Birthday",
            (
                "eve",
                {
                    "type": "wait",
                    "until_field": "birthday",
                    "anniversary": True,
                    "offset": "-P1D",
                    "at": "09:00",
                },
            ),
        )
    )
    progress = await result(handle)
    assert progress.history[0].outcome == "moved on: field 'birthday' is empty"
    asked = harness.fakes.resolved[-1]
    assert (asked.until_field, asked.anniversary, asked.offset) == ("birthday", True, "-P1D")


def leaves_early(key: str) -> dict[str, Any]:
    return {
        **linear_journey(key, "Leaves early", ("pause", wait("P10D")), ("mail", mail("Late"))),
        "exit_if": {"field": "plan", "op": "eq", "value": "cancelled"},
    }


async def test_exit_if_is_checked_when_the_profile_changes_during_a_wait(
    harness: Harness,
) -> None:
    harness.fakes.profile = {"plan": "pro"}
    handle = await harness.start(leaves_early("exit-wait"))
    await at_step(handle, "pause")
    harness.fakes.profile = {"plan": "cancelled"}
    await handle.signal(JourneyWorkflow.profile_changed, ProfileChange(fields=["plan"]))
    progress = await result(handle)
    assert (progress.status, progress.reason) == ("exited", "exit_if held during `pause`")
    assert [v.step for v in progress.history] == ["pause"]
    (line,) = [j for j in harness.fakes.journal if j.journey_key == "exit-wait"][-1:]
    assert (line.kind, line.title, line.step) == (
        "journey_exited",
        "Left journey exit-wait: exit_if held during `pause`",
        "pause",
    )
    assert harness.fakes.sent == []
    attrs = (await handle.describe()).typed_search_attributes
    assert {p.key.name: p.value for p in attrs}["JourneyStatus"] == "exited"


async def test_exit_if_is_checked_before_every_step(harness: Harness) -> None:
    harness.fakes.profile = {"plan": "pro"}
    handle = await harness.start(leaves_early("exit-before"))
    await at_step(handle, "pause")
    harness.fakes.profile = {"plan": "cancelled"}  # no signal: found before `mail`
    progress = await result(handle)
    assert progress.status == "exited" and progress.reason == "exit_if held before `mail`"
    assert harness.fakes.sent == []


async def test_a_removed_participant_leaves_at_once(harness: Harness) -> None:
    handle = await harness.start(
        linear_journey("removal", "Removal", ("pause", wait("P1Y")), ("mail", mail("Never")))
    )
    await at_step(handle, "pause")
    await handle.signal(JourneyWorkflow.remove, Removal(reason="asked to leave"))
    progress = await result(handle)
    assert (progress.status, progress.reason) == ("removed", "asked to leave")
    assert harness.fakes.sent == []


async def test_a_branch_on_selection_membership(harness: Harness) -> None:
    harness.fakes.memberships = {"selection:vip": True}
    handle = await harness.start(
        journey(
            "vip-branch",
            steps={
                "check": {
                    "type": "branch",
                    "if": {"all": [{"selection": "vip"}, {"not": {"project": "seminar"}}]},
                    "then": "vip",
                    "else": "end",
                },
                "vip": {**mail("For VIPs"), "next": "end"},
                "end": {"type": "end"},
            },
        )
    )
    progress = await result(handle)
    assert [v.step for v in progress.history] == ["check", "vip", "end"]
    assert harness.fakes.loads[-1].memberships == ["project:seminar", "selection:vip"]


def test_split_buckets_spread_evenly() -> None:
    buckets = [split_bucket("k", str(uuid.UUID(int=i)), "ab") for i in range(10_000)]
    below = sum(b < 30 for b in buckets)
    assert 2_800 < below < 3_200, below


async def test_records_memberships_notifications_and_scripts(harness: Harness) -> None:
    handle = await harness.start(
        linear_journey(
            "crm",
            "CRM",
            ("vip", {"type": "add_to_selection", "selection": "vip"}),
            ("out", {"type": "remove_from_project", "project": "seminar"}),
            (
                "call",
                {
                    "type": "create_activity",
                    "title": "Call",
                    "activity_type": "call",
                    "due_in": "P2D",
                    "owner": {"kind": "user", "user": "sam"},
                },
            ),
            (
                "ticket",
                {
                    "type": "create_request",
                    "title": "Help",
                    "category": "billing",
                    "owner": {"kind": "auto"},
                },
            ),
            ("deal", {"type": "create_sale", "title": "Deal", "amount": 10}),
            ("hook", {"type": "run_script", "url": "https://crm.example/hooks/x"}),
            ("tell", {"type": "notify", "to": "sam", "subject": "s", "body": "b"}),
            (
                "ops",
                {
                    "type": "update_contact",
                    "ops": [{"field": "score", "op": "increment", "value": 2}],
                },
            ),
        )
    )
    progress = await result(handle)
    assert [v.step for v in progress.history][-1] == "end"
    fakes = harness.fakes
    changes = [(c.kind, c.key, c.add) for c in fakes.membership_changes]
    assert changes == [("selection", "vip", True), ("project", "seminar", False)]
    assert [(r.kind, r.owner, r.due_in, r.category) for r in fakes.records] == [
        ("activity", {"kind": "user", "user": "sam"}, "P2D", None),
        ("request", {"kind": "auto"}, None, "billing"),
        ("sale", {"kind": "contact_owner"}, None, None),
    ]
    assert [n.to for n in fakes.notified] == ["sam"]
    assert fakes.updates[-1].ops == [{"field": "score", "op": "increment", "value": 2}]
    # Each side effect has its own key, so a retry of one is never taken for another.
    keys = [r.idempotency_key for r in fakes.records] + [
        c.idempotency_key for c in fakes.membership_changes
    ]
    assert len(set(keys)) == len(keys)
    # The script runs in a workflow of its own, which the journey did not wait for.
    script = harness.env.client.get_workflow_handle_for(
        ScriptCallWorkflow.run, f"script/{handle.id}/" + keys[0].split("/")[-3] + "/hook/1"
    )
    assert (await script.result()).status == "succeeded"
    assert fakes.scripts[0].url == "https://crm.example/hooks/x"
    assert fakes.scripts[0].participant == handle.id


async def test_the_other_membership_steps_and_a_script_run(harness: Harness) -> None:
    """The membership kinds the test above leaves out, and the script's own run: with
    it every step kind and workflow type has a recorded history (test_replay.py)."""
    handle = await harness.start(
        linear_journey(
            "crm2",
            "CRM 2",
            ("not_vip", {"type": "remove_from_selection", "selection": "vip"}),
            ("seminar", {"type": "add_to_project", "project": "seminar"}),
            ("hook", {"type": "run_script", "url": "https://crm.example/hooks/y"}),
        )
    )
    await result(handle)
    changes = [(c.kind, c.key, c.add) for c in harness.fakes.membership_changes]
    assert changes == [("selection", "vip", False), ("project", "seminar", True)]
    run_id = harness.fakes.membership_changes[0].idempotency_key.split("/")[-3]
    script = harness.env.client.get_workflow_handle_for(
        ScriptCallWorkflow.run, f"script/{handle.id}/{run_id}/hook/1"
    )
    assert (await script.result()).status == "succeeded"
    await record_history(script, "script-call")


def texting(key: str, if_no_phone: str) -> dict[str, Any]:
    return linear_journey(
        key,
        "Texting",
        (
            "sms",
            {"type": "send_sms", "text": "Hi {{ contact.first_name }}", "if_no_phone": if_no_phone},
        ),
        ("mail", mail("After")),
    )


async def test_an_sms_and_what_happens_without_a_phone(harness: Harness) -> None:
    sent = await result(await harness.start(texting("sms-sent", "exit")))
    assert (sent.status, sent.history[0].outcome) == ("completed", "sent")
    assert harness.fakes.texted[-1].text == "Hi {{ contact.first_name }}"
    harness.fakes.has_phone = False
    skipped = await result(await harness.start(texting("sms-skip", "skip")))
    assert (
        skipped.status == "completed" and skipped.history[0].outcome == "skipped: no phone number"
    )
    exited = await result(await harness.start(texting("sms-exit", "exit")))
    assert (exited.status, exited.reason) == ("exited", "no phone number for `sms`")
    assert [s.step for s in harness.fakes.sent] == ["mail", "mail"]  # not after the exit
