"""Bulk operations: freeze the target set, work through it a page at a time, finish.

Two kinds share the path: `enrol_selection` (everyone in a selection enters a
journey) and `generate_action` (a campaign action: a record per contact, and its
mail or journey). One long activity pages the frozen targets and heartbeats where
it stands; a worker crash restarts it from the last heartbeat, and the page in
flight is done again harmlessly: enrolments are made under the operation's
request key, records and mails under keys of their own, and each answers what
was done the first time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities
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
    SendResult,
)
from journeys.outages import outage_of
from journeys.store import campaigns, operations
from journeys.store.conditions_sql import QueryProblem, interval_sql
from journeys.store.journeys import PublishedJourney, get_journey
from journeys.store.queries import SelectionSql, selection_sql

HEARTBEAT_EVERY = 5.0
# Targets per page: one enrolment call (START_CONCURRENCY starts in flight) per page.
PAGE = 500

PageHandler = Callable[[list[uuid.UUID], Counter[str]], Awaitable[list[dict[str, Any]]]]
PageOutcome = tuple[Counter[str], list[dict[str, Any]]]
# Pages begun at once: the next is read and its intents written while one finishes.
PAGES_IN_FLIGHT = 2


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
        handle = await self._handler(op)
        details = activity.info().heartbeat_details
        page = OperationPage.model_validate(details[0]) if details else OperationPage()
        counts = Counter(page.counts)
        after = uuid.UUID(page.after) if page.after else None
        in_flight: deque[tuple[list[uuid.UUID], asyncio.Task[PageOutcome]]] = deque()
        # A page takes seconds; the heartbeat says the worker is alive meanwhile.
        ticker = asyncio.create_task(keep_heartbeating(lambda: page, HEARTBEAT_EVERY))
        try:
            while True:
                while len(in_flight) < PAGES_IN_FLIGHT:
                    targets = await operations.target_page(self.pool, op.id, after, PAGE)
                    if not targets:
                        break
                    after = targets[-1]
                    in_flight.append((targets, asyncio.create_task(_each_or_all(targets, handle))))
                if not in_flight:
                    return page
                targets, task = in_flight.popleft()
                done, errors = await task
                counts.update(done)
                page = OperationPage(
                    after=str(targets[-1]), done=page.done + len(targets), counts=dict(counts)
                )
                await operations.note_progress(self.pool, op.id, page.done, page.counts, errors)
                activity.heartbeat(page.model_dump(mode="json"))
        finally:
            ticker.cancel()
            await finish_pages([task for _, task in in_flight])

    async def _handler(self, op: operations.Operation) -> PageHandler:
        if op.kind == "enrol_selection":
            entered = await self._journey(op.subject["journey"])
            return lambda targets, counts: self._enrol(op.id, entered, targets, counts)
        action = await self._action(op)
        # The mail as it was when generation was asked for, whatever was published since.
        mail = (
            await self._journey(action.mail_journey, op.subject.get("mail_version"))
            if action.mail_journey
            else None
        )
        journey = await self._journey(action.journey_key) if action.journey_key else None

        async def generate(targets: list[uuid.UUID], counts: Counter[str]) -> list[dict[str, Any]]:
            if action.per_destination:
                await campaigns.write_records(self.pool, action, list(targets))
                counts["records"] += len(targets)  # there now, whether new or done before
            errors: list[dict[str, Any]] = []
            if mail is not None:
                errors += await self._mail(op, mail, targets, counts)
            if journey is not None:
                errors += await self._enrol(op.id, journey, targets, counts)
            return errors

        return generate

    async def _enrol(
        self,
        operation_id: uuid.UUID,
        journey: PublishedJourney,
        targets: list[uuid.UUID],
        counts: Counter[str],
    ) -> list[dict[str, Any]]:
        outcomes = await enrol(
            self.client,
            self.pool,
            self.task_queue,
            journey,
            targets,
            request_key=operation_key(operation_id),
            limit=self._starts,
        )
        counts.update(o.status for o in outcomes)
        return []

    async def _mail(
        self,
        op: operations.Operation,
        mail: PublishedJourney,
        targets: list[uuid.UUID],
        counts: Counter[str],
    ) -> list[dict[str, Any]]:
        """The action's mail to each target, through the one send path (idempotent per
        action and contact: a page done again sends nothing twice)."""
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
        errors: list[dict[str, Any]] = []
        retry: BaseException | None = None
        # Every send of the page ends (each is idempotent) before a retryable failure
        # (the mail server away) sends the page round again.
        for contact_id, result in zip(targets, await self.email.send_emails(requests), strict=True):
            if isinstance(result, SendResult):
                counts[result.status] += 1
            elif isinstance(result, ApplicationError) and result.non_retryable:
                counts["failed"] += 1
                errors.append({"contact_id": str(contact_id), "reason": result.message})
            else:
                retry = retry or result
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


async def _each_or_all(targets: list[uuid.UUID], handle: PageHandler) -> PageOutcome:
    """Do the page; when it fails for a reason other than an outage (a bug, bad data in
    one target), each target on its own, so that one bad target fails alone. The
    page's counts, and the targets that failed with why."""
    counts: Counter[str] = Counter()
    try:
        return counts, await handle(targets, counts)
    except Exception as exc:
        if _try_again(exc):
            raise  # the page again, after the outage
    counts = Counter()
    errors: list[dict[str, Any]] = []
    for contact_id in targets:
        one: Counter[str] = Counter()
        try:
            errors += await handle([contact_id], one)
            counts.update(one)
        except Exception as one_exc:
            if _try_again(one_exc):
                raise
            counts["failed"] += 1
            errors.append({"contact_id": str(contact_id), "reason": str(one_exc)[:300]})
    return counts, errors


def _try_again(exc: BaseException) -> bool:
    """An outage (met here, or reported by the send path as a retryable error): the
    page is done again later, nobody in it fails for it."""
    if isinstance(exc, ApplicationError):
        return not exc.non_retryable
    return outage_of(exc) is not None
