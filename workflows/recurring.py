"""One run of a recurring send, started by its Temporal Schedule (or by a test mail).

Open the run (does it send at all?), freeze its recipients, send in pages through
the send path, finish with the counts. A handful of events whatever the number of
recipients: no workflow per recipient (a follow-up a mail fires has its own).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.bulk import HEARTBEAT, RETRY

with workflow.unsafe.imports_passed_through():
    from activities.recurring import RecurringActivities
    from journeys.models import (
        FinishRun,
        OpenRun,
        RecurringRunInput,
        RunInput,
        RunPlan,
        RunResult,
    )

# Set by Temporal on a workflow a schedule starts: the time it was due.
SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn(name="RecurringRun")
class RecurringRunWorkflow:
    @workflow.run
    async def run(self, input: RecurringRunInput) -> RunResult:
        info = workflow.info()
        # The moment the run was due names its day, even when it starts late.
        at: datetime = info.typed_search_attributes.get(SCHEDULED_AT) or workflow.now()
        plan: RunPlan = await workflow.execute_activity_method(
            RecurringActivities.open_run,
            OpenRun(
                key=input.key,
                workflow_id=info.workflow_id,
                run_id=info.run_id,
                at=at,
                test=input.test,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary="open the run",
        )
        if not plan.go:
            return RunResult(run_id=plan.run_id, status="skipped", reason=plan.reason)
        run = RunInput(run_id=plan.run_id, test=input.test)
        try:
            found: dict[str, int] = await workflow.execute_activity_method(
                RecurringActivities.freeze_run,
                run,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RETRY,
                summary="freeze the recipients",
            )
            await workflow.execute_activity_method(
                RecurringActivities.send_run,
                run,
                start_to_close_timeout=timedelta(hours=12),
                heartbeat_timeout=HEARTBEAT,
                retry_policy=RETRY,
                summary=f"send to {found['found'] - found['deduplicated']} recipients",
            )
        except ActivityError as exc:
            reason = str(exc.cause.message if isinstance(exc.cause, ApplicationError) else exc)
            return await self._finish(FinishRun(run_id=plan.run_id, status="failed", error=reason))
        return await self._finish(FinishRun(run_id=plan.run_id, status="completed"))

    async def _finish(self, finish: FinishRun) -> RunResult:
        result: RunResult = await workflow.execute_activity_method(
            RecurringActivities.finish_run,
            finish,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"mark the run {finish.status}",
        )
        return result
