"""ScriptCallWorkflow: one run_script call, retried in the background.

A workflow of its own (started by the journey, which does not wait for it) so
that the call's retries neither hold up the participant nor end with the
journey, and each call is visible in the web UI with its attempts. A call whose
every attempt failed ends the workflow failed with the last error, where
`ExecutionStatus = "Failed"` and `journeys ops failed` find it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.scripts import ScriptActivities
    from journeys.models import ScriptCallInput, ScriptCallResult

# Bounded: a script endpoint that is down for good must not be called for ever.
SCRIPT_ATTEMPTS = 5
# Patch (README, "Changing workflow code"): a call that failed for good fails the
# workflow; calls that gave up before it replay as they ran (completed, "failed").
SCRIPT_FAILS = "script-call-fails"
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
            cause = exc.cause
            error = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
            await workflow.execute_activity_method(
                ScriptActivities.give_up_script,
                input,
                start_to_close_timeout=timedelta(seconds=30),
                summary="record the failure",
            )
            if not workflow.patched(SCRIPT_FAILS):
                return ScriptCallResult(status="failed", error=str(exc.cause or exc))
            tried = (
                f" after {SCRIPT_ATTEMPTS} attempts"
                if exc.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
                else ""
            )
            raise ApplicationError(
                f"run_script {input.step} of {input.journey_key} failed{tried}: {error}",
                type="ScriptFailed",
                non_retryable=True,
            ) from exc
