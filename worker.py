"""The Temporal worker: journey workflows and every activity they call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.contacts import ContactActivities
from activities.email import EmailActivities
from activities.smtp import SmtpSender
from journeys.db import create_pool
from journeys.settings import Settings
from journeys.temporal import connect
from workflows.journey import JourneyWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [JourneyWorkflow]

# Shared with the benchmark's bare worker, so that its floor runs with the same tuning.
WORKER_OPTIONS: dict[str, Any] = {
    "max_concurrent_activities": 200,
    # The first workflow task of a new participant comes from the non-sticky
    # queue; the SDK default (0.2) leaves one poller there, and a large
    # enrolment then settles at half the rate it does with the pollers split.
    "nonsticky_to_sticky_poll_ratio": 1.0,
    # On a clean stop (deploy, Ctrl-C) running sends finish and record what they did,
    # instead of being cancelled between the server's 250 and the row saying `sent`.
    "graceful_shutdown_timeout": timedelta(seconds=30),
}


def bound_activities(
    settings: Settings, pool: asyncpg.Pool, sender: SmtpSender
) -> list[Callable[..., Any]]:
    """Every activity the workflows call, bound to `pool` and `sender`."""
    email = EmailActivities(pool, settings, sender)
    contacts = ContactActivities(pool)
    return [email.send_email, contacts.load_contact, contacts.update_contact]


def build_worker(
    client: Client, settings: Settings, pool: asyncpg.Pool, sender: SmtpSender
) -> Worker:
    """A worker for the journeys task queue, with activities bound to `pool` and `sender`."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=bound_activities(settings, pool, sender),
        **WORKER_OPTIONS,
    )


@asynccontextmanager
async def running_worker(settings: Settings, client: Client | None = None) -> AsyncIterator[Worker]:
    """Run a worker (with its database pool and SMTP connections) for the block."""
    client = client or await connect(settings)
    pool = await create_pool(settings.database_url, max_size=20)
    sender = SmtpSender(settings.smtp_url)
    try:
        async with build_worker(client, settings, pool, sender) as worker:
            log.info("worker.started", task_queue=settings.task_queue)
            yield worker
    finally:
        await sender.close()
        await pool.close()


async def run_worker(settings: Settings) -> None:
    async with running_worker(settings):
        await asyncio.Event().wait()
