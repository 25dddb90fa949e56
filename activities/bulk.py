"""Bulk operations: freeze the target set, work through it a page at a time, finish.

One long activity pages the frozen targets and heartbeats where it stands; a worker
crash restarts it from the last heartbeat, and the page in flight is done again
harmlessly: each target is done under the operation's request key, which answers
what was done the first time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.retries import quiet_outages
from journeys.enrolment import enrol
from journeys.models import FinishOperation, OperationInput, OperationPage
from journeys.outages import outage_of
from journeys.store import operations
from journeys.store.conditions_sql import QueryProblem
from journeys.store.journeys import PublishedJourney, get_journey
from journeys.store.queries import selection_sql

HEARTBEAT_EVERY = 5.0
# Targets per page: one enrolment call (START_CONCURRENCY starts in flight) per page.
PAGE = 500


async def _keep_heartbeating(page: OperationPage) -> None:
    while True:
        activity.heartbeat(page.model_dump(mode="json"))
        await asyncio.sleep(HEARTBEAT_EVERY)


def operation_key(operation_id: uuid.UUID) -> str:
    """The request key each target of the operation is done under."""
    return f"operation/{operation_id}"


class BulkActivities:
    def __init__(
        self, pool: asyncpg.Pool, client: Client, task_queue: str, default_time_zone: str
    ) -> None:
        self.pool = pool
        self.client = client
        self.task_queue = task_queue
        self.default_time_zone = default_time_zone

    async def _operation(self, input: OperationInput) -> operations.Operation:
        op = await operations.get_operation(self.pool, uuid.UUID(input.operation_id))
        if op is None:
            raise ApplicationError(
                f"operation {input.operation_id} does not exist", non_retryable=True
            )
        return op

    @activity.defn(name="freeze_targets")
    @quiet_outages
    async def freeze_targets(self, input: OperationInput) -> int:
        """Write the operation's target set (the selection's members now); its size."""
        op = await self._operation(input)
        try:
            members = await selection_sql(
                self.pool, op.subject["selection"], self.default_time_zone
            )
        except QueryProblem as exc:
            raise ApplicationError(
                f"selection '{op.subject['selection']}': {exc}", non_retryable=True
            ) from None
        return await operations.freeze_targets(self.pool, op.id, members)

    @activity.defn(name="enrol_targets")
    @quiet_outages
    async def enrol_targets(self, input: OperationInput) -> OperationPage:
        """Enrol every target in the journey, a page at a time, from the last heartbeat."""
        op = await self._operation(input)
        journey = await get_journey(self.pool, op.subject["journey"])
        if journey is None:
            raise ApplicationError(
                f"journey '{op.subject['journey']}' does not exist", non_retryable=True
            )
        details = activity.info().heartbeat_details
        page = OperationPage.model_validate(details[0]) if details else OperationPage()
        counts = Counter(page.counts)
        while True:
            after = uuid.UUID(page.after) if page.after else None
            targets = await operations.target_page(self.pool, op.id, after, PAGE)
            if not targets:
                return page
            # A page takes seconds; the heartbeat says the worker is alive meanwhile.
            ticker = asyncio.create_task(_keep_heartbeating(page))
            try:
                errors = await self._enrol_page(op.id, journey, targets, counts)
            finally:
                ticker.cancel()
            page = OperationPage(
                after=str(targets[-1]), done=page.done + len(targets), counts=dict(counts)
            )
            await operations.note_progress(self.pool, op.id, page.done, page.counts, errors)
            activity.heartbeat(page.model_dump(mode="json"))

    async def _enrol_page(
        self,
        operation_id: uuid.UUID,
        journey: PublishedJourney,
        targets: list[uuid.UUID],
        counts: Counter[str],
    ) -> list[dict[str, Any]]:
        """Enrol one page, adding the outcomes to `counts`; the targets that failed."""
        errors: list[dict[str, Any]] = []

        async def enrol_some(contact_ids: list[uuid.UUID]) -> None:
            outcomes = await enrol(
                self.client,
                self.pool,
                self.task_queue,
                journey,
                contact_ids,
                request_key=operation_key(operation_id),
            )
            counts.update(o.status for o in outcomes)

        try:
            await enrol_some(targets)
        except Exception as exc:
            if outage_of(exc) is not None:
                raise  # the page again, after the outage
            # A bug or bad data in one target failed the page: each target on its own.
            for contact_id in targets:
                try:
                    await enrol_some([contact_id])
                except Exception as one_exc:
                    if outage_of(one_exc) is not None:
                        raise
                    counts["failed"] += 1
                    errors.append({"contact_id": str(contact_id), "reason": str(one_exc)[:300]})
        return errors

    @activity.defn(name="finish_operation")
    @quiet_outages
    async def finish_operation(self, input: FinishOperation) -> None:
        await operations.finish_operation(
            self.pool, uuid.UUID(input.operation_id), input.status, input.counts, input.error
        )
