"""Long journeys continue-as-new between steps and lose nothing on the way.

A dev server told to suggest continue-as-new after a few history events makes
every participant here roll over several times.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from journeys.contacts import ContactIn
from journeys.definition import JourneyDefinition
from journeys.devstack import TemporalDevServer, free_port
from journeys.enrolment import start_participant
from journeys.models import STEPS_TAKEN_KEY, JourneyProgress, MessageEvent
from journeys.store.contacts import upsert_contact
from journeys.store.journeys import publish
from journeys.temporal import connect
from tests.builders import journey
from tests.conftest import Stack
from worker import running_worker
from workflows.journey import JourneyWorkflow


async def test_state_survives_continue_as_new(stack: Stack, tmp_path: Path) -> None:
    server = TemporalDevServer(
        tmp_path / "t.db",
        port=free_port(),
        ui_port=None,
        extra_args=("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=12"),
    )
    await server.start()
    try:
        settings = stack.settings.model_copy(update={"temporal_address": server.address})
        client = await connect(settings)
        steps = {
            f"nap{i}": {"type": "wait", "duration": "PT1S", "next": f"nap{i + 1}"} for i in range(4)
        }
        steps["nap4"] = {
            "type": "wait_for_event",
            "event": "clicked",
            "message": "mail",
            "timeout": "PT1S",
            "on_event": "end",
            "on_timeout": "end",
        }
        published = await publish(
            stack.pool,
            JourneyDefinition.model_validate(
                journey(
                    f"can-{uuid.uuid4().hex[:6]}",
                    name="Rolls over",
                    start="mail",
                    steps={
                        "mail": {
                            "type": "send_email",
                            "subject": "x",
                            "html": "<p>x</p>",
                            "next": "nap0",
                        },
                        **steps,
                        "end": {"type": "end"},
                    },
                )
            ),
        )
        contact, *_ = await upsert_contact(
            stack.pool, ContactIn(email=f"can-{uuid.uuid4().hex[:6]}@example.com")
        )
        async with running_worker(settings, client, dispatch=False):
            handle = await start_participant(client, settings.task_queue, published, contact.id)
            message_id = None
            while message_id is None:
                await asyncio.sleep(0.05)
                message_id = await stack.pool.fetchval(
                    "SELECT id::text FROM messages WHERE contact_id = $1 AND status = 'sent'",
                    contact.id,
                )
            # The click arrives in the first run; the wait for it comes several runs later.
            await handle.signal(
                JourneyWorkflow.message_event,
                MessageEvent(
                    message_id=message_id,
                    step="mail",
                    kind="clicked",
                    url="https://x.example/",
                    at=datetime.now(UTC),
                ),
            )
            progress = await handle.result()  # follows the chain of runs
        assert isinstance(progress, JourneyProgress)
        assert [v.step for v in progress.history] == [
            "mail",
            "nap0",
            "nap1",
            "nap2",
            "nap3",
            "nap4",
            "end",
        ]
        assert progress.history[5].outcome == "clicked"
        first = await client.get_workflow_handle(handle.id, run_id=handle.result_run_id).describe()
        assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        # Every step the participant was at, those of earlier runs of the chain included
        # (the console's "went through" counts).
        last = await client.get_workflow_handle(handle.id).describe()
        assert last.run_id != first.run_id
        taken = last.typed_search_attributes.get(STEPS_TAKEN_KEY)
        assert sorted(taken or []) == sorted(
            ["mail", "nap0", "nap1", "nap2", "nap3", "nap4", "end"]
        )
        sent = await stack.pool.fetchval(
            "SELECT count(*) FROM messages WHERE contact_id = $1", contact.id
        )
        assert sent == 1
    finally:
        server.stop()
