"""ScriptCallWorkflow: one run_script call, retried in the background.

A workflow of its own (started by the journey, which does not wait for it) so
that the call's retries neither hold up the participant nor end with the
journey, and each call is visible in the web UI with its attempts.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.scripts import ScriptActivities
    from journeys.models import ScriptCallInput, ScriptCallResult

# Bounded: a script endpoint that is down for good must not be called for ever.
SCRIPT_ATTEMPTS = 5
SCRIPT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=4.0,
    maximum_interval=timedelta(minutes=30),
    maximum_attempts=SCRIPT_ATTEMPTS,
)


@workflow.defn(name="ScriptCallWorkflow")
class ScriptCallWorkflow:
    @workflow.run
    async def run(self, input: ScriptCallInput) -> ScriptCallResult:
        try:
            result: ScriptCallResult = await workflow.execute_activity_method(
                ScriptActivities.call_script,
                input,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SCRIPT_RETRY,
                summary=f"POST to {input.url}",
            )
            return result
        except ActivityError as exc:
            failed = ScriptCallResult(status="failed", error=str(exc.cause or exc))
            await workflow.execute_activity_method(
                ScriptActivities.give_up_script,
                input,
                start_to_close_timeout=timedelta(seconds=30),
                summary="record the failure",
            )
            return failed
