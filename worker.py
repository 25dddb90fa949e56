"""The Temporal worker: journey workflows and every activity they call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import structlog
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.bulk import BulkActivities
from activities.contacts import ContactActivities
from activities.crm import CrmActivities
from activities.email import EmailActivities
from activities.groups import GroupActivities
from activities.recurring import RecurringActivities
from activities.scripts import TIMEOUT as SCRIPT_TIMEOUT
from activities.scripts import ScriptActivities
from activities.sms import SmsActivities
from activities.smtp import SmtpSender
from activities.timing import TimingActivities
from activities.twilio import SMS_STATUS_PATH, SmsProvider, TwilioProvider, parse_sms_url
from journeys import worker_health
from journeys.db import create_pool
from journeys.dispatch import Dispatcher
from journeys.enrolment import sweep_intents_forever
from journeys.outages import outage_log
from journeys.settings import Settings
from journeys.temporal import connect
from journeys.worker_health import WorkerHealth
from workflows.bulk import BulkOperationWorkflow, SelectionEntryWorkflow
from workflows.journey import JourneyWorkflow
from workflows.recurring import RecurringRunWorkflow
from workflows.script import ScriptCallWorkflow

log = structlog.get_logger(__name__)

WORKFLOWS = [
    JourneyWorkflow,
    ScriptCallWorkflow,
    BulkOperationWorkflow,
    SelectionEntryWorkflow,
    RecurringRunWorkflow,
]

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


@dataclass(frozen=True)
class Outbound:
    """The connections activities talk to the outside world over."""

    smtp: SmtpSender
    http: httpx.AsyncClient
    sms: SmsProvider | None


def bound_activities(
    settings: Settings, pool: asyncpg.Pool, outbound: Outbound, client: Client
) -> list[Callable[..., Any]]:
    """Every activity the workflows call, bound to `pool`, the outbound connections and
    (for bulk operations, which start journeys) the Temporal client."""
    zone = settings.default_time_zone
    email = EmailActivities(pool, settings, outbound.smtp)
    contacts = ContactActivities(pool, zone)
    timing = TimingActivities(pool, zone)
    groups = GroupActivities(pool)
    crm = CrmActivities(pool, zone)
    scripts = ScriptActivities(pool, settings.secret.get_secret_value(), outbound.http)
    sms = SmsActivities(pool, settings, outbound.sms)
    bulk = BulkActivities(pool, client, settings.task_queue, zone, email)
    recurring = RecurringActivities(pool, client, settings.task_queue, zone, email)
    return [
        email.send_email,
        email.notify,
        sms.send_sms,
        contacts.load_contact,
        contacts.update_contact,
        contacts.note_journal,
        timing.resolve_wait,
        timing.end_of_quiet_hours,
        groups.change_membership,
        crm.create_record,
        scripts.call_script,
        scripts.give_up_script,
        bulk.freeze_targets,
        bulk.work_targets,
        bulk.finish_operation,
        bulk.open_entry_operation,
        recurring.open_run,
        recurring.freeze_run,
        recurring.send_run,
        recurring.finish_run,
    ]


def build_worker(
    client: Client, settings: Settings, pool: asyncpg.Pool, outbound: Outbound
) -> Worker:
    """A worker for the journeys task queue, with activities bound to `pool` and `outbound`."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=bound_activities(settings, pool, outbound, client),
        deployment_config=deployment_config(settings),
        **WORKER_OPTIONS,
    )


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """The Worker Deployment version this worker serves (JOURNEYS_DEPLOYMENT and
    JOURNEYS_BUILD_ID), or None: unversioned, every worker takes every task."""
    if settings.deployment_name is None or settings.build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name, settings.build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED
        if settings.versioning == "pinned"
        else VersioningBehavior.AUTO_UPGRADE,
    )


@asynccontextmanager
async def running_worker(
    settings: Settings,
    client: Client | None = None,
    *,
    dispatch: bool = True,
    health: WorkerHealth | None = None,
) -> AsyncIterator[Worker]:
    """Run a worker (with its database pool and SMTP connections) for the block, and
    beside it the event dispatcher and the sweep of interrupted enrolments unless
    `dispatch` is False (a second worker against another Temporal server must leave
    the database's events and intents alone). `health` is kept up to date for the
    worker's probes."""
    client = client or await connect(settings)
    pool = await create_pool(settings.database_url, max_size=20)
    outbound = Outbound(
        smtp=SmtpSender(settings.smtp_url, connections=settings.smtp_connections),
        http=httpx.AsyncClient(timeout=SCRIPT_TIMEOUT, follow_redirects=False),
        sms=TwilioProvider(
            parse_sms_url(settings.sms_url),
            status_callback=f"{settings.public_url.rstrip('/')}{SMS_STATUS_PATH}",
        )
        if settings.sms_url
        else None,
    )
    # A PostgreSQL outage is logged when it begins and when the pool answers again.
    # Its own watch, with its own pool: another worker in the process keeps its own.
    unwatch = outage_log.watch("PostgreSQL", lambda: pool.fetchval("SELECT 1"))
    background: list[asyncio.Task[None]] = []
    if dispatch:
        dispatcher = Dispatcher(pool, client, settings.task_queue, settings.database_url)
        background = [
            asyncio.create_task(dispatcher.run()),
            asyncio.create_task(sweep_intents_forever(client, pool, settings.task_queue)),
        ]
        if health is not None:
            health.listening = lambda: dispatcher.listening
    if health is not None:
        background.append(asyncio.create_task(health.watch(client)))
    try:
        async with build_worker(client, settings, pool, outbound) as worker:
            if health is not None:
                health.polling = lambda: worker.is_running and not worker.is_shutdown
            log.info("worker.started", task_queue=settings.task_queue)
            yield worker
    finally:
        unwatch()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await outbound.smtp.close()
        await outbound.http.aclose()
        if outbound.sms is not None:
            await outbound.sms.close()
        await pool.close()


async def run_worker(settings: Settings) -> None:
    """`journeys worker`: the worker, and its endpoint on JOURNEYS_METRICS_PORT (plus the
    process's index under `--processes N`, so that each has its own port): /metrics,
    /healthz and /readyz (`journeys.worker_health`)."""
    health = WorkerHealth()
    if settings.metrics_port:
        port = settings.metrics_port + settings.worker_process
        try:
            worker_health.serve(port, health)
            log.info("worker.metrics", port=port, paths=["/metrics", "/healthz", "/readyz"])
        except OSError as exc:  # the port is taken: the worker matters more than its metrics
            log.error("worker.metrics_unavailable", port=port, error=str(exc))
    async with running_worker(settings, health=health):
        await asyncio.Event().wait()
