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
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from journeys.definition import JourneyDefinition
from journeys.enrolment import start_participant
from journeys.models import (
    ContactSnapshot,
    JourneyProgress,
    LoadContactInput,
    MessageEvent,
    SendEmailInput,
    SendResult,
    UpdateContactInput,
)
from journeys.store.journeys import PublishedJourney
from tests.builders import journey
from tests.test_definition import valid_definition
from workflows.journey import JourneyWorkflow


@dataclass
class FakeActivities:
    profile: dict[str, Any] = field(default_factory=dict)
    sent: list[SendEmailInput] = field(default_factory=list)
    updates: list[UpdateContactInput] = field(default_factory=list)

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendResult:
        self.sent.append(input)
        return SendResult(message_id=f"msg-{input.step}", status="sent")

    @activity.defn(name="load_contact")
    async def load_contact(self, input: LoadContactInput) -> ContactSnapshot:
        return ContactSnapshot(fields=self.profile)

    @activity.defn(name="update_contact")
    async def update_contact(self, input: UpdateContactInput) -> None:
        self.updates.append(input)


@dataclass
class Harness:
    env: WorkflowEnvironment
    fakes: FakeActivities
    task_queue: str

    async def start(self, definition: dict[str, Any], version: int = 1) -> WorkflowHandle[Any, Any]:
        journey = PublishedJourney(
            key=definition["key"],
            name=definition["name"],
            version=version,
            published_at=datetime.now(UTC),
            definition=JourneyDefinition.model_validate(definition),
        )
        return await start_participant(self.env.client, self.task_queue, journey, uuid.uuid4())


@pytest.fixture
async def harness(time_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    fakes = FakeActivities()
    task_queue = f"wf-{uuid.uuid4()}"
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[JourneyWorkflow],
        activities=[fakes.send_email, fakes.load_contact, fakes.update_contact],
    ):
        yield Harness(time_env, fakes, task_queue)


HISTORIES = Path(__file__).parent / "histories"


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
    if os.environ.get("JOURNEYS_RECORD_HISTORIES") == "1":
        name = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())
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
