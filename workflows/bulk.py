"""Bulk operations as a workflow: a selection enrolled in a journey, a campaign action
generated. Each freezes its target set first, then pages it in one heartbeating
activity, so the history stays a handful of events whatever the count."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.bulk import BulkActivities
    from journeys.models import (
        EntryInput,
        FinishOperation,
        OperationInput,
        OperationPage,
        OperationResult,
        operation_workflow_id,
    )

# A worker that dies is noticed within this; its successor resumes from the heartbeat.
HEARTBEAT = timedelta(seconds=20)
# Outages retry for as long as they last; a bug or a missing journey does not.
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn(name="BulkOperation")
class BulkOperationWorkflow:
    """Freeze the targets, work through them, mark the operation; the row says which
    kind of operation (`activities.bulk`)."""

    @workflow.run
    async def run(self, input: OperationInput) -> OperationResult:
        try:
            total: int = await workflow.execute_activity_method(
                BulkActivities.freeze_targets,
                input,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RETRY,
                summary="freeze the targets",
            )
            page: OperationPage = await workflow.execute_activity_method(
                BulkActivities.work_targets,
                input,
                start_to_close_timeout=timedelta(days=7),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=RETRY,
                summary=f"{total} targets",
            )
        except ActivityError as exc:
            reason = str(exc.cause.message if isinstance(exc.cause, ApplicationError) else exc)
            await self._finish(
                FinishOperation(operation_id=input.operation_id, status="failed", error=reason)
            )
            return OperationResult(status="failed", total=0, counts={}, error=reason)
        await self._finish(
            FinishOperation(operation_id=input.operation_id, status="completed", counts=page.counts)
        )
        return OperationResult(status="completed", total=total, counts=page.counts)

    async def _finish(self, finish: FinishOperation) -> None:
        await workflow.execute_activity_method(
            BulkActivities.finish_operation,
            finish,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"mark the operation {finish.status}",
        )


@workflow.defn(name="SelectionEntry")
class SelectionEntryWorkflow:
    """One run of a journey's selection entry, started by its Temporal Schedule: an
    enrolment of the selection as a child operation (`operation/<id>`)."""

    @workflow.run
    async def run(self, input: EntryInput) -> OperationResult | None:
        operation_id: str | None = await workflow.execute_activity_method(
            BulkActivities.open_entry_operation,
            input,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"open the entry operation of {input.journey_key}",
        )
        if operation_id is None:
            return None
        result: OperationResult = await workflow.execute_child_workflow(
            BulkOperationWorkflow.run,
            OperationInput(operation_id=operation_id),
            id=operation_workflow_id(operation_id),
            static_summary=f"Selection entry of {input.journey_key}",
        )
        return result
