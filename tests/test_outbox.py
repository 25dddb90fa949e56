"""The outbox's wake-up: a notification when events were stored, and only then."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import asyncpg

from journeys.contacts import ContactIn
from journeys.db import create_pool
from journeys.dispatch import CHANNEL
from journeys.store.contacts import upsert_contact
from journeys.store.messages import (
    Claim,
    Sent,
    claim_messages,
    mark_messages_sent,
    record_message_event,
)
from tests.conftest import Stack


async def test_only_statements_that_store_events_wake_the_dispatchers(stack: Stack) -> None:
    """Marking a page of mails without follow-ups sent inserts no `sent` event: it must
    not wake every dispatcher for a claim that finds nothing (it did, once per group
    commit of a bulk send)."""
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email="outbox@example.com"))
    [row] = await claim_messages(
        stack.pool,
        [
            Claim(
                idempotency_key=f"outbox/{uuid.uuid4()}",
                channel="email",
                workflow_id="recurring-run/outbox-test",
                journey_key="outbox",
                version=1,
                step="mail",
                contact_id=contact.id,
                recipient=contact.email,
                skip=None,
            )
        ],
        lease_owner=uuid.uuid4(),
        lease=timedelta(seconds=10),
    )
    listener = await asyncpg.connect(stack.settings.database_url)
    # One connection, so that its notifications can be told from the stack's own.
    writer = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    try:
        pid = await writer.fetchval("SELECT pg_backend_pid()")
        heard: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener(
            CHANNEL,
            lambda _c, sender, _ch, payload: heard.put_nowait(payload) if sender == pid else None,
        )

        async def notified_by(statement: Awaitable[object]) -> list[str]:
            # Notifications of one session arrive in order: once the probe's is heard,
            # any the statement made has been heard before it.
            await statement
            await writer.execute("SELECT pg_notify($1, 'probe')", CHANNEL)
            payloads = [await asyncio.wait_for(heard.get(), 10)]
            while payloads[-1] != "probe":
                payloads.append(await asyncio.wait_for(heard.get(), 10))
            return payloads[:-1]

        mark_sent = mark_messages_sent(writer, [Sent(row["id"], "subject", "<id@test>")])
        assert await notified_by(mark_sent) == []
        assert (
            await stack.pool.fetchval("SELECT status FROM messages WHERE id = $1", row["id"])
            == "sent"
        )

        an_open = record_message_event(
            writer, row["id"], "opened", None, at=datetime.now(UTC), hit_id=uuid.uuid4()
        )
        assert await notified_by(an_open) == ["message_events"]
    finally:
        await listener.close()
        await writer.close()
