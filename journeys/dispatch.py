"""The event dispatcher: delivers stored events to the journeys they concern.

Every event (open, click, unsubscribe, `POST /events`, a profile change) is one
row, inserted by the HTTP handler, which answers at once. This loop, in the
worker process, takes undelivered rows and routes them:

- an open, a click, a delivery error or an unsubscribe: a signal to the run that
  sent the message, and the start of each follow-up of the message it fires
  (`journeys.followups`; a message's `sent` event fires only follow-ups);
- a contact's event: a signal to each of the contact's runs, and an enrolment in
  the journeys whose entry is that event;
- a profile change: a signal to the runs whose journey has an `exit_if`, and an
  enrolment in the journeys entered on that field change.

A row is marked delivered when every part succeeded; otherwise it is tried
again with a backoff, and workflows drop a second delivery by the event's id. A
NOTIFY from the inserting statement wakes the loop; a poll is the safety net.
Rows are claimed with `SKIP LOCKED` and a lease, so several workers share them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client

from journeys import metrics
from journeys.conditions import evaluate, facts_read
from journeys.definition import Condition
from journeys.definition.journey import FieldChangeEntry
from journeys.enrolment import enrol
from journeys.followups import message_step, start_follow_up, triggered
from journeys.models import (
    BULK_SENDER_PREFIXES,
    ContactEvent,
    JourneyState,
    MessageEvent,
    ProfileChange,
)
from journeys.outages import outage_log, outage_of
from journeys.signals import deliver
from journeys.store.enrolments import record_follow_up_run, runs_of_contact, runs_watching_profile
from journeys.store.journeys import (
    PublishedJourney,
    get_journey,
    journeys_entered_by,
    journeys_entered_on_fields,
)
from journeys.store.outbox import (
    claim_contact_events,
    claim_message_events,
    mark_contact_event_delivered,
    mark_failed,
    mark_message_events_delivered,
)
from journeys.store.queries import contact_snapshot
from workflows.journey import JourneyWorkflow

log = structlog.get_logger(__name__)

CHANNEL = "journeys_events"
# Rows taken per claim; a full batch is followed at once by the next claim.
BATCH = 200
# Signals in flight at once. Temporal's frontend is the limit, as for enrolment.
CONCURRENCY = 64
# Batches being delivered at once, while the loop claims the next.
BATCHES_IN_FLIGHT = 4
# A claimed row goes back to the others when its dispatcher has not finished it by then.
LEASE = timedelta(seconds=60)
# The safety net when a notification was missed (the listening connection was down),
# and how soon a failed row (backoff 1 s and more) is looked at again.
POLL_SECONDS = 1.0
# Waits after the database itself failed, growing to the last.
DATABASE_BACKOFF = (0.5, 1.0, 2.0, 5.0)

# schedule_if asks about the contact only (checked at publish), never about a run.
NO_STATE = JourneyState(current_step="")

# Message event kinds a journey can wait for.
SIGNALLED_KINDS = ("opened", "clicked", "delivery_error", "unsubscribed")


def _error(exc: BaseException) -> str:
    backend = outage_of(exc)
    text = f"{type(exc).__name__}: {exc}"[:500]
    return f"{backend} unavailable: {text}" if backend else text


def _warn(event: str, exc: BaseException) -> None:
    """A warning, unless it is an outage of a watched backend (`OutageLog`): the
    dispatcher meets a PostgreSQL outage every second."""
    if not outage_log.failed(outage_of(exc), event, _error(exc)):
        log.warning(event, error=_error(exc))


class Dispatcher:
    def __init__(
        self, pool: asyncpg.Pool, client: Client, task_queue: str, database_url: str
    ) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.database_url = database_url
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._journeys: dict[tuple[str, int], PublishedJourney] = {}
        self._batches = asyncio.Semaphore(BATCHES_IN_FLIGHT)
        self._contacts_busy = False
        # Whether the LISTEN connection is held (the worker's readiness).
        self.listening = False

    async def run(self) -> None:
        """Dispatch until cancelled, whatever the backends do meanwhile."""
        listener = asyncio.create_task(self._listen())
        in_flight: set[asyncio.Task[None]] = set()
        failures = 0
        try:
            while True:
                # Cleared before claiming: a notification during the claim wakes the wait.
                self._wake.clear()
                try:
                    busy = await self._claim_and_deliver(in_flight)
                    wait = 0.0 if busy else POLL_SECONDS
                    failures = 0
                except Exception as exc:
                    backend = outage_of(exc)
                    if backend is None:
                        log.exception("dispatch.failed")
                    elif not outage_log.failed(backend, "dispatch.outage", _error(exc)):
                        log.warning("dispatch.outage", error=_error(exc))
                    wait = DATABASE_BACKOFF[min(failures, len(DATABASE_BACKOFF) - 1)]
                    failures += 1
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            listener.cancel()
            for task in in_flight:
                task.cancel()
            await asyncio.gather(listener, *in_flight, return_exceptions=True)

    async def _claim_and_deliver(self, in_flight: set[asyncio.Task[None]]) -> bool:
        """Claim a batch and deliver it in the background: the next claim does not wait
        for the signals of this one, so a hit waits for no batch before it. True when a
        batch was full (more may wait)."""
        await self._batches.acquire()
        try:
            # A contact's events go in order: one batch of them at a time.
            claims = [claim_message_events(self.pool, BATCH, LEASE)]
            if not self._contacts_busy:
                claims.append(claim_contact_events(self.pool, BATCH, LEASE))
            messages, *rest = await asyncio.gather(*claims)
            contacts = rest[0] if rest else []
        except BaseException:
            self._batches.release()
            raise
        if not messages and not contacts:
            self._batches.release()
            return False
        self._contacts_busy = bool(contacts) or self._contacts_busy
        task = asyncio.create_task(self._deliver(messages, contacts))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        return len(messages) == BATCH or len(contacts) == BATCH

    async def _deliver(
        self, messages: list[asyncpg.Record], contacts: list[asyncpg.Record]
    ) -> None:
        try:
            await asyncio.gather(self._message_events(messages), self._contact_events(contacts))
        except Exception as exc:  # marking failed: the rows' leases run out, then a retry
            _warn("dispatch.unmarked", exc)
        finally:
            if contacts:
                self._contacts_busy = False
                self._wake.set()  # contact events that came meanwhile go next, not after a poll
            self._batches.release()

    async def _listen(self) -> None:
        """Hold a LISTEN connection; reconnect after it is lost."""
        while True:
            try:
                conn = await asyncpg.connect(self.database_url, timeout=5)
            except Exception as exc:
                _warn("dispatch.listen_failed", exc)
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                await self._listen_on(conn)
            except Exception as exc:
                _warn("dispatch.listen_lost", exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda *_args: self._wake.set())
        self._wake.set()  # anything inserted while we were not listening
        self.listening = True
        try:
            while not lost.is_set() and not conn.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 5)
        finally:
            self.listening = False

    async def _message_events(self, rows: list[asyncpg.Record]) -> None:
        if not rows:
            return
        failures: dict[int, str] = {}

        async def one(row: asyncpg.Record) -> None:
            if row["kind"] not in SIGNALLED_KINDS:
                if row["kind"] == "sent" and row["follow_up_path"]:
                    try:
                        async with self._limit:
                            await self._follow_ups(row)
                    except Exception as exc:
                        failures[row["id"]] = _error(exc)
                return
            event = MessageEvent(
                id=row["id"],
                message_id=str(row["message_id"]),
                step=row["step"],
                kind=row["kind"],
                url=row["url"],
                error=(row["data"] or {}).get("kind") if row["kind"] == "delivery_error" else None,
                at=row["at"],
            )
            try:
                async with self._limit:
                    # A run that has ended does not wait for anything any more, and one
                    # that sent to many recipients waits for none of their events.
                    if not row["workflow_id"].startswith(BULK_SENDER_PREFIXES):
                        await deliver(
                            self.client, row["workflow_id"], JourneyWorkflow.message_event, event
                        )
                    if row["follow_up_path"]:
                        await self._follow_ups(row)
            except Exception as exc:
                failures[row["id"]] = _error(exc)

        await asyncio.gather(*(one(r) for r in rows))
        delivered = [r["id"] for r in rows if r["id"] not in failures]
        if delivered:
            await mark_message_events_delivered(self.pool, delivered)
            metrics.events_delivered("message", rows, failed=failures)
        if failures:
            log.warning("dispatch.retry", events=len(failures), error=next(iter(failures.values())))
            await mark_failed(self.pool, "message_events", failures)
            metrics.dispatch_retried("message", len(failures))

    async def _follow_ups(self, row: asyncpg.Record) -> None:
        """Start the follow-ups the event fires (each once per message)."""
        journey = await self._journey(row["journey_key"], row["journey_version"])
        path: list[str] = list(row["follow_up_path"])
        step = message_step(journey.definition, path) if journey else None
        if journey is None or step is None:
            return
        data = row["data"] or {}
        rules = triggered(
            step,
            row["kind"],
            url=row["url"],
            error=data.get("kind"),
            at=row["at"],
            listening_since=row["listening_since"],
        )
        contact_id: uuid.UUID = row["contact_id"]
        for rule in rules:
            if not await self._holds(rule.schedule_if, contact_id):
                continue
            workflow_id = await start_follow_up(
                self.client, self.task_queue, journey, contact_id, row["message_id"], path, rule
            )
            await record_follow_up_run(
                self.pool,
                workflow_id,
                contact_id,
                journey.key,
                row["message_id"],
                rule.key,
                rule.on,
                f"Follow-up '{rule.key}' of {'/'.join(path)} fired ({rule.on})",
            )

    async def _holds(self, schedule_if: Condition | None, contact_id: uuid.UUID) -> bool:
        """Whether a follow-up's or an entry's schedule_if holds for the contact now (on
        its profile and memberships; it cannot ask about a run)."""
        if schedule_if is None:
            return True
        snapshot = await contact_snapshot(self.pool, contact_id, facts_read(schedule_if))
        return snapshot is not None and evaluate(
            schedule_if, snapshot.fields, NO_STATE, snapshot.memberships
        )

    async def _journey(self, key: str, version: int) -> PublishedJourney | None:
        # Published versions never change: each is read once per process.
        found = self._journeys.get((key, version))
        if found is None:
            found = await get_journey(self.pool, key, version)
            if found is not None:
                self._journeys[(key, version)] = found
        return found

    async def _contact_events(self, rows: list[asyncpg.Record]) -> None:
        failures: dict[int, str] = {}

        async def one(row: asyncpg.Record) -> None:
            try:
                async with self._limit:
                    delivered_to, entries = await self._route_contact_event(row)
                await mark_contact_event_delivered(self.pool, row["id"], delivered_to, entries)
                metrics.events_delivered("contact", [row])
            except Exception as exc:
                failures[row["id"]] = _error(exc)

        # A contact's events go in the order they came (one after the other), and
        # contacts side by side.
        by_contact: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for row in rows:
            by_contact.setdefault(row["contact_id"], []).append(row)

        async def in_order(batch: list[asyncpg.Record]) -> None:
            for i, row in enumerate(batch):
                await one(row)
                if row["id"] in failures:
                    for later in batch[i + 1 :]:
                        failures[later["id"]] = "waits for the contact's earlier event"
                    return

        await asyncio.gather(*(in_order(b) for b in by_contact.values()))
        if failures:
            log.warning("dispatch.retry", events=len(failures), error=next(iter(failures.values())))
            await mark_failed(self.pool, "contact_events", failures)
            metrics.dispatch_retried("contact", len(failures))

    async def _route_contact_event(
        self, row: asyncpg.Record
    ) -> tuple[list[str], list[dict[str, Any]]]:
        contact_id: uuid.UUID = row["contact_id"]
        data: dict[str, Any] = row["data"] or {}
        delivered: list[str] = []
        if row["kind"] == "profile_change":
            fields: list[str] = data.get("fields", [])
            if not data.get("created"):
                change = ProfileChange(fields=fields)
                for workflow_id in await runs_watching_profile(self.pool, contact_id):
                    if await deliver(
                        self.client, workflow_id, JourneyWorkflow.profile_changed, change
                    ):
                        delivered.append(workflow_id)
            values = data.get("values", {})
            entered = [
                journey
                for journey in await journeys_entered_on_fields(self.pool, fields)
                if isinstance(entry := journey.definition.entry, FieldChangeEntry)
                # Without `to`, a change of what was there: a new contact changed nothing.
                and (
                    values.get(entry.field) == entry.to
                    if entry.to is not None
                    else not data.get("created")
                )
            ]
            return delivered, await self._enter(entered, contact_id, row["id"])
        event = ContactEvent(id=row["id"], name=row["name"], data=data, at=row["at"])
        for workflow_id in await runs_of_contact(self.pool, contact_id):
            if await deliver(self.client, workflow_id, JourneyWorkflow.contact_event, event):
                delivered.append(workflow_id)
        by_event = await journeys_entered_by(self.pool, {"type": "event", "name": row["name"]})
        return delivered, await self._enter(by_event, contact_id, row["id"])

    async def _enter(
        self, journeys: list[PublishedJourney], contact_id: uuid.UUID, event_id: int
    ) -> list[dict[str, Any]]:
        """Enrol the contact in each journey whose entry's schedule_if holds now; under
        the event's id, so that delivering the event again enrols nobody twice."""
        entries: list[dict[str, Any]] = []
        for journey in journeys:
            schedule_if = getattr(journey.definition.entry, "schedule_if", None)
            if not await self._holds(schedule_if, contact_id):
                entries.append(
                    {
                        "journey_key": journey.key,
                        "status": "refused",
                        "reason": "the entry's schedule_if does not hold",
                    }
                )
                continue
            (enrolment,) = await enrol(
                self.client,
                self.pool,
                self.task_queue,
                journey,
                [contact_id],
                request_key=f"contact-event/{event_id}",
            )
            entries.append(
                {"journey_key": journey.key, "status": enrolment.status, "reason": enrolment.reason}
            )
        return entries
