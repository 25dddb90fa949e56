"""Bulk operations: freeze the target set, work through it a page at a time, finish.

Two kinds share the path: `enrol_selection` (everyone in a selection enters a
journey) and `generate_action` (a campaign action: a record per contact, and its
mail or journey). One long activity pages the frozen targets and heartbeats where
it stands; a worker crash restarts it from the last heartbeat, and the page in
flight is done again harmlessly: enrolments are made under the operation's
request key, records and mails under keys of their own, and each answers what
was done the first time.

Progress counts what is done as it happens: each target when its mail or its
enrolment is done (not a page of 500 at a time: an operation said `done: 0` of 1,000
while its mails were going out), written every PROGRESS_EVERY seconds while it
changes, and once more when an attempt stops. It only grows, so a retried page does
not count down what it had done. The pages of one attempt send through one
`activities.relay.RelayGate`: a relay that says it is unavailable stops them, and
they are retried whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities
from activities.relay import RelayDown, RelayGate
from activities.retries import finish_pages, give_up, keep_heartbeating, quiet_outages
from journeys.definition import parse_duration
from journeys.definition.journey import SelectionEntry
from journeys.enrolment import START_CONCURRENCY, enrol
from journeys.message_journeys import MAIL_STEP, mail_input, mail_step
from journeys.models import (
    EntryInput,
    FinishOperation,
    OperationInput,
    OperationPage,
    SendEmailInput,
    SendResult,
)
from journeys.outages import outage_of
from journeys.store import campaigns, operations
from journeys.store.conditions_sql import QueryProblem, interval_sql
from journeys.store.journeys import PublishedJourney, get_journey
from journeys.store.queries import SelectionSql, selection_sql

log = structlog.get_logger(__name__)

HEARTBEAT_EVERY = 5.0
# Seconds between writes of an operation's progress while its pages are under way.
PROGRESS_EVERY = 1.0
# Targets per page: one enrolment call (START_CONCURRENCY starts in flight) per page.
PAGE = 500
# Pages begun at once: the next is read and its intents written while one finishes.
PAGES_IN_FLIGHT = 2


@dataclass
class PageState:
    """What a page has done so far, as it happens: its targets done and their outcomes.

    A target goes through `parts` parts (its mail, its enrolment: a campaign action
    may have both), and is done when the last has ended, or when it failed."""

    parts: int = 1
    counts: Counter[str] = field(default_factory=Counter)
    done: int = 0
    _parts_done: Counter[uuid.UUID] = field(default_factory=Counter)

    def outcome(self, contact_id: uuid.UUID, status: str) -> None:
        """One part of the target ended so."""
        self.counts[status] += 1
        self._parts_done[contact_id] += 1
        if self._parts_done[contact_id] == max(self.parts, 1):
            self.done += 1

    def failed(self, contact_id: uuid.UUID) -> None:
        """The target failed (the page went one by one): done, with what it did."""
        self.counts["failed"] += 1
        if self._parts_done[contact_id] < max(self.parts, 1):
            self.done += 1
        self._parts_done[contact_id] = max(self.parts, 1)

    def reset(self) -> None:
        self.counts.clear()
        self._parts_done.clear()
        self.done = 0


PageHandler = Callable[[list[uuid.UUID], PageState], Awaitable[list[dict[str, Any]]]]
# A page under way: its targets, what it did so far, its task (the targets that failed).
_Running = tuple[list[uuid.UUID], PageState, asyncio.Task[list[dict[str, Any]]]]


def operation_key(operation_id: uuid.UUID) -> str:
    """The request key each enrolment of the operation is made under."""
    return f"operation/{operation_id}"


class BulkActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        task_queue: str,
        default_time_zone: str,
        email: EmailActivities,
    ) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.default_time_zone = default_time_zone
        self.email = email
        # Starts in flight for all pages of an operation together, as for one enrolment call.
        self._starts = asyncio.Semaphore(START_CONCURRENCY)

    async def _operation(self, input: OperationInput) -> operations.Operation:
        op = await operations.get_operation(self.pool, uuid.UUID(input.operation_id))
        if op is None:
            raise give_up(f"operation {input.operation_id} does not exist")
        return op

    async def _action(self, op: operations.Operation) -> campaigns.Action:
        action = await campaigns.get_action(self.pool, op.subject["campaign"], op.subject["action"])
        if action is None:
            raise give_up(f"campaign action {op.subject} does not exist")
        return action

    async def _journey(self, key: str, version: int | None = None) -> PublishedJourney:
        journey = await get_journey(self.pool, key, version)
        if journey is None:
            raise give_up(f"journey '{key}' does not exist")
        return journey

    @activity.defn(name="freeze_targets")
    @quiet_outages
    async def freeze_targets(self, input: OperationInput) -> int:
        """Write the operation's target set once (the selection's members now, less the
        contacts unlinked from a campaign action); its size."""
        op = await self._operation(input)
        selection = op.subject["selection"]
        try:
            members = await selection_sql(self.pool, selection, self.default_time_zone)
        except QueryProblem as exc:
            raise give_up(f"selection '{selection}': {exc}") from None
        if op.kind == "generate_action":
            unlinked, args = campaigns.unlinked_sql(
                op.subject["campaign"], op.subject["action"], len(members.args) + 1
            )
            members = SelectionSql(f"({members.where}) AND NOT {unlinked}", members.args + args)
        elif op.subject.get("entry"):
            members = await self._not_kept_out(op.subject["journey"], members)
        return await operations.freeze_targets(self.pool, op.id, members)

    async def _not_kept_out(self, journey_key: str, members: SelectionSql) -> SelectionSql:
        """A selection entry's run looks only at members the re-entry rule may let in, so
        that members who entered already are not asked again every time."""
        rule = (await self._journey(journey_key)).definition.reentry
        if rule.policy == "always":
            return members  # whoever has no open run: the start itself tells
        n = len(members.args)
        recent, args = "", list[object]([journey_key])
        if rule.after is not None:
            recent = f" AND e.enrolled_at > now() - {interval_sql(f'${n + 2}::float8')}"
            args.append(parse_duration(rule.after).total_seconds())
        entered = (
            f"EXISTS (SELECT 1 FROM enrolments e WHERE e.journey_key = ${n + 1}::text "
            f"AND e.contact_id = c.id{recent})"
        )
        return SelectionSql(f"({members.where}) AND NOT {entered}", members.args + args)

    @activity.defn(name="open_entry_operation")
    @quiet_outages
    async def open_entry_operation(self, input: EntryInput) -> str | None:
        """The operation of one run of a journey's selection entry; None when the journey's
        latest version no longer enters by selection (the schedule is on its way out)."""
        journey = await get_journey(self.pool, input.journey_key)
        entry = journey.definition.entry if journey else None
        if not isinstance(entry, SelectionEntry):
            return None
        op, _ = await operations.create_operation(
            self.pool,
            "enrol_selection",
            {"journey": input.journey_key, "selection": entry.selection, "entry": True},
            f"entry/{activity.info().workflow_id}/{activity.info().workflow_run_id}",
        )
        return str(op.id)

    @activity.defn(name="work_targets")
    @quiet_outages
    async def work_targets(self, input: OperationInput) -> OperationPage:
        """Do every target, a page at a time, from the last heartbeat on.

        The next page is read and begun while the one before finishes (its last
        starts, its marks), so that starts stay in flight all along; progress is
        recorded in page order, so a crash redoes at most the pages in flight.
        """
        op = await self._operation(input)
        handle, parts = await self._handler(op, self.email.relay_gate())
        details = activity.info().heartbeat_details
        page = OperationPage.model_validate(details[0]) if details else OperationPage()
        counts = Counter(page.counts)
        after = uuid.UUID(page.after) if page.after else None
        in_flight: deque[_Running] = deque()

        def progress() -> tuple[int, dict[str, int]]:
            """Targets done and outcomes: the pages done, and what those under way did."""
            live, done = Counter(counts), page.done
            for _, state, _ in in_flight:
                live.update(state.counts)
                done += state.done
            return done, dict(live)

        # A page takes seconds; the heartbeat says the worker is alive meanwhile.
        ticker = asyncio.create_task(keep_heartbeating(lambda: page, HEARTBEAT_EVERY))
        writer = asyncio.create_task(self._write_progress(op.id, progress))
        try:
            while True:
                while len(in_flight) < PAGES_IN_FLIGHT:
                    targets = await operations.target_page(self.pool, op.id, after, PAGE)
                    if not targets:
                        break
                    after = targets[-1]
                    state = PageState(parts)
                    work = asyncio.create_task(_each_or_all(targets, handle, state))
                    in_flight.append((targets, state, work))
                if not in_flight:
                    return page
                targets, state, task = in_flight[0]
                errors = await task
                in_flight.popleft()
                counts.update(state.counts)
                page = OperationPage(
                    after=str(targets[-1]), done=page.done + len(targets), counts=dict(counts)
                )
                await operations.note_progress(self.pool, op.id, *progress(), errors)
                activity.heartbeat(page.model_dump(mode="json"))
        finally:
            ticker.cancel()
            writer.cancel()
            await finish_pages([task for *_, task in in_flight])
            # What this attempt did, when it stops (the relay away, a failure).
            with contextlib.suppress(Exception):
                await operations.note_done(self.pool, op.id, *progress())

    async def _write_progress(
        self, operation_id: uuid.UUID, progress: Callable[[], tuple[int, dict[str, int]]]
    ) -> None:
        """Write the operation's progress every PROGRESS_EVERY seconds while it changes."""
        written = None
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            now = progress()
            if now == written or now[0] == 0:
                continue
            try:
                await operations.note_done(self.pool, operation_id, *now)
                written = now
            except Exception as exc:  # the page's end writes it too
                if outage_of(exc) is None:
                    log.warning("operation.progress_unwritten", error=type(exc).__name__)

    async def _handler(self, op: operations.Operation, gate: RelayGate) -> tuple[PageHandler, int]:
        """What a page does, and how many parts each target goes through."""
        if op.kind == "enrol_selection":
            entered = await self._journey(op.subject["journey"])
            return (lambda targets, state: self._enrol(op.id, entered, targets, state)), 1
        action = await self._action(op)
        # The mail as it was when generation was asked for, whatever was published since.
        mail = (
            await self._journey(action.mail_journey, op.subject.get("mail_version"))
            if action.mail_journey
            else None
        )
        journey = await self._journey(action.journey_key) if action.journey_key else None

        async def generate(targets: list[uuid.UUID], state: PageState) -> list[dict[str, Any]]:
            if action.per_destination:
                await campaigns.write_records(self.pool, action, list(targets))
                state.counts["records"] += len(targets)  # there now, whether new or done before
            if state.parts == 0:  # the records are all there is to it
                state.done += len(targets)
            errors: list[dict[str, Any]] = []
            if mail is not None:
                errors += await self._mail(op, mail, targets, state, gate)
            if journey is not None:
                errors += await self._enrol(op.id, journey, targets, state)
            return errors

        return generate, (mail is not None) + (journey is not None)

    async def _enrol(
        self,
        operation_id: uuid.UUID,
        journey: PublishedJourney,
        targets: list[uuid.UUID],
        state: PageState,
    ) -> list[dict[str, Any]]:
        await enrol(
            self.client,
            self.pool,
            self.task_queue,
            journey,
            targets,
            request_key=operation_key(operation_id),
            limit=self._starts,
            on_outcome=state.outcome,  # each contact as its enrolment is decided
        )
        return []

    async def _mail(
        self,
        op: operations.Operation,
        mail: PublishedJourney,
        targets: list[uuid.UUID],
        state: PageState,
        gate: RelayGate,
    ) -> list[dict[str, Any]]:
        """The action's mail to each target, through the one send path (idempotent per
        action and contact: a page done again sends nothing twice), each counted as it
        ends; the page stops when the relay says it is unavailable (`gate`)."""
        step = mail_step(mail)
        if step is None:
            raise give_up(f"journey '{mail.key}' has no '{MAIL_STEP}' step to send")
        requests = [
            mail_input(
                mail,
                step,
                idempotency_key=f"campaign/{op.subject['campaign']}/{op.subject['action']}/"
                f"{contact_id}",
                workflow_id=f"operation/{op.id}",
                contact_id=str(contact_id),
            )
            for contact_id in targets
        ]

        def heard(request: SendEmailInput, result: SendResult | BaseException) -> None:
            contact_id = uuid.UUID(request.contact_id)
            if isinstance(result, SendResult):
                state.outcome(contact_id, result.status)
            elif isinstance(result, ApplicationError) and result.non_retryable:
                state.outcome(contact_id, "failed")

        errors: list[dict[str, Any]] = []
        retry: BaseException | None = None
        # Every send of the page ends (each is idempotent) before a retryable failure
        # (the mail server away) sends the page round again.
        results = await self.email.send_emails(requests, gate=gate, on_result=heard)
        for contact_id, result in zip(targets, results, strict=True):
            if isinstance(result, ApplicationError) and result.non_retryable:
                errors.append({"contact_id": str(contact_id), "reason": result.message})
            elif not isinstance(result, SendResult):
                retry = retry or result
        if gate.down is not None:
            # What the relay said, for the attempt's one line; an outage, so the page
            # is retried whole (a connection lost during DATA is no outage of its own,
            # and would have failed every target left, one by one).
            raise RelayDown(gate.down)
        if retry is not None:
            raise retry
        return errors

    @activity.defn(name="finish_operation")
    @quiet_outages
    async def finish_operation(self, input: FinishOperation) -> None:
        op = await self._operation(OperationInput(operation_id=input.operation_id))
        if op.kind == "generate_action" and input.status == "completed":
            action = await self._action(op)
            if not action.per_destination:
                await campaigns.write_records(self.pool, action, [None])
            await campaigns.mark_generated(
                self.pool, action.campaign_key, action.key, op.total or 0
            )
        await operations.finish_operation(self.pool, op.id, input.status, input.counts, input.error)


async def _each_or_all(
    targets: list[uuid.UUID], handle: PageHandler, state: PageState
) -> list[dict[str, Any]]:
    """Do the page; when it fails for a reason other than an outage (a bug, bad data in
    one target), each target on its own, so that one bad target fails alone. `state`
    counts as it goes; the targets that failed, with why."""
    try:
        return await handle(targets, state)
    except Exception as exc:
        if _try_again(exc):
            raise  # the page again, after the outage
    state.reset()
    errors: list[dict[str, Any]] = []
    for contact_id in targets:
        try:
            errors += await handle([contact_id], state)
        except Exception as one_exc:
            if _try_again(one_exc):
                raise
            state.failed(contact_id)
            errors.append({"contact_id": str(contact_id), "reason": str(one_exc)[:300]})
    return errors


def _try_again(exc: BaseException) -> bool:
    """An outage (met here, or reported by the send path as a retryable error): the
    page is done again later, nobody in it fails for it."""
    if isinstance(exc, ApplicationError):
        return not exc.non_retryable
    return outage_of(exc) is not None
