"""JourneyWorkflow on Temporal's time-skipping test server: years pass in moments.

Activities are stand-ins here (same names and types as the real ones) so the
tests look at the interpreter alone; the real activities run in test_e2e.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from journeys.definition import JourneyDefinition
from journeys.enrolment import start_participant
from journeys.models import (
    NO_PHONE,
    SA_STATUS,
    ContactEvent,
    ContactSnapshot,
    CreatedRecord,
    CreateRecordInput,
    JournalInput,
    JourneyProgress,
    LoadContactInput,
    MembershipInput,
    MessageEvent,
    NotifyInput,
    QuietHoursInput,
    ResolvedWait,
    ResolveWaitInput,
    ScriptCallInput,
    ScriptCallResult,
    SendEmailInput,
    SendResult,
    SendSmsInput,
    UpdateContactInput,
)
from journeys.store.journeys import PublishedJourney
from tests.builders import journey, linear_journey, mail
from tests.helpers import record_history
from tests.test_definition import valid_definition
from workflows.journey import JourneyWorkflow
from workflows.script import ScriptCallWorkflow


@dataclass
class FakeActivities:
    profile: dict[str, Any] = field(default_factory=dict)
    sent: list[SendEmailInput] = field(default_factory=list)
    updates: list[UpdateContactInput] = field(default_factory=list)
    loads: list[LoadContactInput] = field(default_factory=list)
    memberships: dict[str, bool] = field(default_factory=dict)
    resolved: list[ResolveWaitInput] = field(default_factory=list)
    next_moment: ResolvedWait = field(default_factory=ResolvedWait)
    notified: list[NotifyInput] = field(default_factory=list)
    texted: list[SendSmsInput] = field(default_factory=list)
    has_phone: bool = True
    journal: list[JournalInput] = field(default_factory=list)
    membership_changes: list[MembershipInput] = field(default_factory=list)
    records: list[CreateRecordInput] = field(default_factory=list)
    scripts: list[ScriptCallInput] = field(default_factory=list)
    send_fails: str | None = None  # a send's error that no retry fixes
    quiet_asked: list[QuietHoursInput] = field(default_factory=list)
    quiet_until: ResolvedWait = field(default_factory=ResolvedWait)  # not quiet now
    joins_in_the_night: dict[str, bool] = field(default_factory=dict)  # memberships then
    capped_until: list[datetime] = field(default_factory=list)  # sends deferred, in turn

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendResult:
        if self.capped_until:
            until = self.capped_until.pop(0)
            return SendResult(message_id="", status="deferred", reason="cap", until=until)
        self.sent.append(input)
        if self.send_fails:
            raise ApplicationError(self.send_fails, non_retryable=True)
        return SendResult(message_id=f"msg-{input.step}", status="sent")

    @activity.defn(name="load_contact")
    async def load_contact(self, input: LoadContactInput) -> ContactSnapshot:
        self.loads.append(input)
        return ContactSnapshot(
            fields=self.profile,
            memberships={k: self.memberships.get(k, False) for k in input.memberships},
        )

    @activity.defn(name="update_contact")
    async def update_contact(self, input: UpdateContactInput) -> None:
        self.updates.append(input)

    @activity.defn(name="resolve_wait")
    async def resolve_wait(self, input: ResolveWaitInput) -> ResolvedWait:
        self.resolved.append(input)
        return self.next_moment

    @activity.defn(name="end_of_quiet_hours")
    async def end_of_quiet_hours(self, input: QuietHoursInput) -> ResolvedWait:
        self.quiet_asked.append(input)
        self.memberships.update(self.joins_in_the_night)
        return self.quiet_until

    @activity.defn(name="notify")
    async def notify(self, input: NotifyInput) -> SendResult:
        self.notified.append(input)
        return SendResult(message_id=f"note-{input.step}", status="sent")

    @activity.defn(name="note_journal")
    async def note_journal(self, input: JournalInput) -> None:
        self.journal.append(input)

    @activity.defn(name="send_sms")
    async def send_sms(self, input: SendSmsInput) -> SendResult:
        self.texted.append(input)
        if not self.has_phone:
            return SendResult(message_id=f"sms-{input.step}", status="skipped", reason=NO_PHONE)
        return SendResult(message_id=f"sms-{input.step}", status="sent")

    @activity.defn(name="change_membership")
    async def change_membership(self, input: MembershipInput) -> bool:
        self.membership_changes.append(input)
        return True

    @activity.defn(name="create_record")
    async def create_record(self, input: CreateRecordInput) -> CreatedRecord:
        self.records.append(input)
        return CreatedRecord(id=f"rec-{input.step}", owner="sam", assigned_by="named")

    @activity.defn(name="call_script")
    async def call_script(self, input: ScriptCallInput) -> ScriptCallResult:
        self.scripts.append(input)
        return ScriptCallResult(status="succeeded", response_status=200)

    @activity.defn(name="give_up_script")
    async def give_up_script(self, input: ScriptCallInput) -> None:
        return None

    def all(self) -> list[Any]:
        return [
            self.send_email,
            self.load_contact,
            self.update_contact,
            self.resolve_wait,
            self.end_of_quiet_hours,
            self.notify,
            self.send_sms,
            self.note_journal,
            self.change_membership,
            self.create_record,
            self.call_script,
            self.give_up_script,
        ]


@dataclass
class Harness:
    env: WorkflowEnvironment
    fakes: FakeActivities
    task_queue: str

    async def start(
        self, definition: dict[str, Any], version: int = 1, contact_id: uuid.UUID | None = None
    ) -> WorkflowHandle[Any, Any]:
        journey = PublishedJourney(
            key=definition["key"],
            name=definition["name"],
            version=version,
            published_at=datetime.now(UTC),
            definition=JourneyDefinition.model_validate(definition),
        )
        return await start_participant(
            self.env.client, self.task_queue, journey, contact_id or uuid.uuid4()
        )


@pytest.fixture
async def harness(time_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = FakeActivities()
    task_queue = f"wf-{uuid.uuid4()}"
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[JourneyWorkflow, ScriptCallWorkflow],
        activities=fakes.all(),
    ):
        yield Harness(time_env, fakes, task_queue)


async def click(handle: WorkflowHandle[Any, Any], url: str) -> None:
    """What the click endpoint signals when mail1's link to `url` is followed."""
    event = MessageEvent(
        message_id="msg-mail1", step="mail1", kind="clicked", url=url, at=datetime.now(UTC)
    )
    await handle.signal(JourneyWorkflow.message_event, event)


async def result(handle: WorkflowHandle[Any, Any]) -> JourneyProgress:
    """The run's outcome; with JOURNEYS_RECORD_HISTORIES=1 its history is also
    saved under tests/histories/ for the replay test (test_replay.py)."""
    progress = await handle.result()
    assert isinstance(progress, JourneyProgress)
    name = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    await record_history(handle, name)
    return progress


async def test_a_two_year_wait_finishes(harness: Harness) -> None:
    handle = await harness.start(
        journey(
            "long",
            name="Long",
            start="sleep",
            steps={
                "sleep": {"type": "wait", "duration": "P2Y", "next": "end"},
                "end": {"type": "end"},
            },
        )
    )
    before = await harness.env.get_current_time()
    progress = await result(handle)
    assert progress.status == "completed"
    assert [v.step for v in progress.history] == ["sleep", "end"]
    assert progress.history[1].at - progress.history[0].at >= timedelta(days=730)
    assert await harness.env.get_current_time() - before >= timedelta(days=730)


async def test_wait_for_event_times_out_without_a_click(harness: Harness) -> None:
    handle = await harness.start(valid_definition("no-click"))
    progress = await result(handle)
    assert [v.step for v in progress.history] == ["mail1", "wait_click", "mark_cold", "done"]
    assert progress.history[1].outcome == "timeout"
    waited = progress.history[2].at - progress.history[1].at
    assert timedelta(days=3) <= waited < timedelta(days=3, minutes=1)
    assert [u.set for u in harness.fakes.updates] == [{"cold": True}]
    assert [s.step for s in harness.fakes.sent] == ["mail1"]


async def test_a_click_takes_the_event_edge(harness: Harness) -> None:
    handle = await harness.start(valid_definition("clicks"))
    progress = await handle.query(JourneyWorkflow.progress)
    for _ in range(100):
        if progress.current_step == "wait_click":
            break
        await asyncio.sleep(0.05)
        progress = await handle.query(JourneyWorkflow.progress)
    assert progress.current_step == "wait_click" and progress.status == "running"
    await click(handle, "https://example.com/pricing")
    progress = await result(handle)
    assert [v.step for v in progress.history] == ["mail1", "wait_click", "mail2", "done"]
    assert progress.history[1].outcome == "clicked"
    assert [s.step for s in harness.fakes.sent] == ["mail1", "mail2"]
    assert harness.fakes.updates == []
    # Each send carries a key unique to (participant run, step, occurrence).
    keys = [s.idempotency_key for s in harness.fakes.sent]
    assert len(set(keys)) == 2 and all(k.startswith(handle.id + "/") for k in keys)


async def test_a_click_on_another_link_does_not_count(harness: Harness) -> None:
    definition = valid_definition("specific-link")
    definition["steps"]["wait_click"]["link"] = "https://example.com/pricing"
    handle = await harness.start(definition)
    await click(handle, "https://example.com/other")
    progress = await result(handle)
    assert progress.history[1].outcome == "timeout"


async def test_a_click_on_the_link_with_a_personalised_query_counts(harness: Harness) -> None:
    """The wait names the link as written in the mail; the click carries what the mail
    filled in (`?ref={{ contact.id }}`) and a fragment: the same link, as for follow-ups.
    Runs that met such a click before this counted it as another link, and still do on
    replay (tests/histories/...-before-links-without-query.json)."""
    definition = valid_definition("personal-link")
    definition["steps"]["wait_click"]["link"] = "https://example.com/pricing"
    handle = await harness.start(definition)
    await click(handle, "https://EXAMPLE.com/pricing?ref=c-42#plans")
    progress = await result(handle)
    assert progress.history[1].outcome == "clicked"
    assert [v.step for v in progress.history] == ["mail1", "wait_click", "mail2", "done"]


async def test_a_mail_due_in_quiet_hours_waits_for_their_end(harness: Harness) -> None:
    """The journey's quiet hours hold for the contact now (the activity reads their
    local time): mail1 goes out when they end, not before; mail2 has `transactional` and
    goes at once, without asking."""
    now = await harness.env.get_current_time()
    harness.fakes.quiet_until = ResolvedWait(until=now + timedelta(hours=9))
    definition = linear_journey(
        "quiet",
        "Quiet",
        ("mail1", mail("First")),
        ("mail2", {**mail("Second"), "transactional": True}),
    )
    definition["quiet_hours"] = {"start": "21:00", "end": "08:00"}
    handle = await harness.start(definition)
    progress = await result(handle)
    assert [s.step for s in harness.fakes.sent] == ["mail1", "mail2"]
    assert [(q.step, q.start, q.end) for q in harness.fakes.quiet_asked] == [
        ("mail1", "21:00", "08:00")
    ]
    # mail1 went out when the quiet hours ended, nine hours after it was due; mail2 at once.
    (mail1, mail2, _end) = progress.history
    assert (mail1.step, mail1.outcome, mail2.step) == ("mail1", "sent", "mail2")
    assert timedelta(hours=8, minutes=59) < mail2.at - mail1.at < timedelta(hours=9, minutes=1)


async def test_exit_if_is_checked_again_when_the_quiet_hours_end(harness: Harness) -> None:
    """The contact joins the `stop` selection in the night (nothing signals that): when
    the quiet hours end, exit_if is asked again before the mail goes, as before a step."""
    now = await harness.env.get_current_time()
    harness.fakes.quiet_until = ResolvedWait(until=now + timedelta(hours=9))
    harness.fakes.joins_in_the_night = {"selection:stop": True}
    definition = linear_journey("quiet-exit", "Quiet exit", ("mail1", mail("First")))
    definition["quiet_hours"] = {"start": "21:00", "end": "08:00"}
    definition["exit_if"] = {"selection": "stop"}
    progress = await result(await harness.start(definition))
    assert (progress.status, progress.reason) == (
        "exited",
        "exit_if held after the quiet hours before `mail1`",
    )
    assert harness.fakes.sent == [] and len(harness.fakes.quiet_asked) == 1


async def test_a_mail_the_frequency_cap_defers_goes_when_it_allows(harness: Harness) -> None:
    """The send answers `deferred` until a moment (twice: the cap was reached again
    meanwhile); the run waits each time and asks again under the same key; the
    transactional mail after it is never deferred by the workflow itself."""
    now = await harness.env.get_current_time()
    harness.fakes.capped_until = [now + timedelta(days=2), now + timedelta(days=3)]
    definition = linear_journey(
        "capped",
        "Capped",
        ("mail1", mail("First")),
        ("code", {**mail("Your code"), "transactional": True}),
    )
    progress = await result(await harness.start(definition))
    (mail1, code, _end) = progress.history
    assert (mail1.outcome, code.outcome) == ("sent", "sent")
    assert timedelta(days=3) <= code.at - mail1.at < timedelta(days=3, minutes=1)
    assert [(s.step, s.transactional) for s in harness.fakes.sent] == [
        ("mail1", False),
        ("code", True),
    ]


async def test_a_journey_without_quiet_hours_asks_nothing(harness: Harness) -> None:
    harness.fakes.quiet_until = ResolvedWait(until=datetime.now(UTC) + timedelta(days=1))
    handle = await harness.start(linear_journey("loud", "Loud", ("mail1", mail("First"))))
    await result(handle)
    assert [s.step for s in harness.fakes.sent] == ["mail1"]
    assert harness.fakes.quiet_asked == []


async def test_branch_reads_the_profile(harness: Harness) -> None:
    harness.fakes.profile = {"plan": "pro", "score": 7}
    handle = await harness.start(
        journey(
            "branchy",
            name="Branchy",
            start="check",
            steps={
                "check": {
                    "type": "branch",
                    "if": {
                        "any": [
                            {"field": "plan", "op": "in", "value": ["pro", "team"]},
                            {"field": "score", "op": "gt", "value": 100},
                        ]
                    },
                    "then": "pro",
                    "else": "free",
                },
                "pro": {"type": "update_contact", "set": {"segment": "pro"}, "next": "end"},
                "free": {"type": "update_contact", "set": {"segment": "free"}, "next": "end"},
                "end": {"type": "end"},
            },
        )
    )
    progress = await result(handle)
    assert [v.step for v in progress.history] == ["check", "pro", "end"]
    assert [u.set for u in harness.fakes.updates] == [{"segment": "pro"}]


async def test_search_attributes_follow_the_participant(harness: Harness) -> None:
    handle = await harness.start(valid_definition("attrs"), version=7)
    await result(handle)
    attrs = (await handle.describe()).typed_search_attributes
    values = {pair.key.name: pair.value for pair in attrs}
    assert values["JourneyKey"] == "attrs" and values["JourneyVersion"] == "7"
    assert values["JourneyStep"] == "done" and values["JourneyStatus"] == "completed"
    assert values["JourneyParticipant"] == handle.id.rsplit("/", 1)[1]


async def test_the_version_pinned_at_entry_is_used_after_a_new_one_is_published(
    harness: Harness, postgres_url: str
) -> None:
    from journeys.db import create_pool
    from journeys.store.journeys import get_journey, publish

    def version(subject: str) -> JourneyDefinition:
        return JourneyDefinition.model_validate(
            journey(
                f"pinned-{harness.task_queue[-8:]}",
                name="Pinned",
                start="pause",
                steps={
                    "pause": {"type": "wait", "duration": "P30D", "next": "mail"},
                    "mail": {
                        "type": "send_email",
                        "subject": subject,
                        "html": "<p>x</p>",
                        "next": "end",
                    },
                    "end": {"type": "end"},
                },
            )
        )

    pool = await create_pool(postgres_url)
    try:
        first = await publish(pool, version("Version one"))
        early = await start_participant(harness.env.client, harness.task_queue, first, uuid.uuid4())
        await publish(pool, version("Version two"))
        latest = await get_journey(pool, first.key)
        assert latest is not None and latest.version == 2
        late = await start_participant(harness.env.client, harness.task_queue, latest, uuid.uuid4())
        assert (await result(early)).version == 1 and (await result(late)).version == 2
    finally:
        await pool.close()
    sent = {s.workflow_id: (s.version, s.subject) for s in harness.fakes.sent}
    assert sent == {early.id: (1, "Version one"), late.id: (2, "Version two")}


def waits_a_day_for_payment(key: str) -> dict[str, Any]:
    """pause a day -> wait up to two days for the event `paid` -> done."""
    return journey(
        key,
        name="Payment",
        start="pause",
        steps={
            "pause": {"type": "wait", "duration": "P1D", "next": "wait_paid"},
            "wait_paid": {
                "type": "wait_for_event",
                "event": "custom",
                "name": "paid",
                "timeout": "P2D",
                "on_event": "done",
                "on_timeout": "done",
            },
            "done": {"type": "end"},
        },
    )


async def wait_at(handle: WorkflowHandle[Any, Any], step: str) -> None:
    for _ in range(200):
        if (await handle.query(JourneyWorkflow.progress)).current_step == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {step}")


async def test_only_events_after_the_wait_began_count_however_many_came_before(
    harness: Harness,
) -> None:
    """The run keeps the latest events of the names it waits for (and no others), so its
    state stays small; a wait still counts only what came after it began."""
    handle = await harness.start(waits_a_day_for_payment("many-events"))
    await wait_at(handle, "pause")
    at = datetime.now(UTC)
    for i in range(1, 91):  # 60 of the awaited name, 30 of another, before the wait
        name = "paid" if i <= 60 else "other"
        await handle.signal(JourneyWorkflow.contact_event, ContactEvent(id=i, name=name, at=at))
    await harness.env.sleep(timedelta(days=1, minutes=1))
    await wait_at(handle, "wait_paid")
    # The dispatcher delivering the latest one again changes nothing; a new one counts.
    await handle.signal(JourneyWorkflow.contact_event, ContactEvent(id=60, name="paid", at=at))
    await handle.signal(JourneyWorkflow.contact_event, ContactEvent(id=91, name="paid", at=at))
    progress = await result(handle)
    assert [(v.step, v.outcome) for v in progress.history] == [
        ("pause", None),
        ("wait_paid", "custom"),
        ("done", None),
    ]


async def test_before_the_wait_began_events_do_not_count(harness: Harness) -> None:
    handle = await harness.start(waits_a_day_for_payment("early-events"))
    await wait_at(handle, "pause")
    at = datetime.now(UTC)
    for i in range(1, 61):
        await handle.signal(JourneyWorkflow.contact_event, ContactEvent(id=i, name="paid", at=at))
    progress = await result(handle)
    assert progress.history[1].outcome == "timeout"


async def test_a_step_that_fails_for_good_ends_the_run_failed(harness: Harness) -> None:
    harness.fakes.send_fails = "template failed: 'plan' is undefined"
    handle = await harness.start(linear_journey("fails", "Fails", ("mail1", mail("Hi"))))
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert "step `mail1` failed: template failed: 'plan' is undefined" in str(info.value.cause)
    progress = await handle.query(JourneyWorkflow.progress)
    assert (progress.status, progress.current_step) == ("failed", "mail1")
    assert progress.reason == "step `mail1` failed: template failed: 'plan' is undefined"
    assert progress.history[-1].outcome == "failed: template failed: 'plan' is undefined"
    assert [(j.kind, j.step) for j in harness.fakes.journal] == [("journey_failed", "mail1")]
    described = await handle.describe()
    status = SearchAttributeKey.for_keyword(SA_STATUS)
    assert described.typed_search_attributes.get(status) == "failed"
    await record_history(handle, "test_a_step_that_fails_for_good_ends_the_run_failed")
