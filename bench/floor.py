"""The floor: bare workflows and a no-op activity, the least Temporal work that
matches each product path. A bare worker (`python -m bench.procs floor-worker`)
runs them in its own process on its own task queue.

Kept in an importable module (not `__main__`) because the workflow sandbox
re-imports the module a workflow is defined in.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

SLEEP_WORKFLOW = "BenchSleep"
THREE_STEPS_WORKFLOW = "BenchThreeSteps"
WAKE_SIGNAL = "wake"
# As long as the journeys' waits in the bench: nobody wakes up by the clock.
LONG_SLEEP = timedelta(days=30)


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name=SLEEP_WORKFLOW)
class SleepWorkflow:
    """Sleeps until signalled (or for 30 days): the floor of a waiting participant."""

    def __init__(self) -> None:
        self.woken = False

    @workflow.run
    async def run(self) -> bool:
        try:
            await workflow.wait_condition(lambda: self.woken, timeout=LONG_SLEEP)
        except TimeoutError:
            return False
        return True

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self, payload: str) -> None:
        self.woken = True


@workflow.defn(name=THREE_STEPS_WORKFLOW)
class ThreeStepsWorkflow:
    """Three no-op activities in a row: the floor of a three-step journey without waits."""

    @workflow.run
    async def run(self) -> int:
        done = 0
        for step in range(3):
            done += await workflow.execute_activity(
                noop, step, start_to_close_timeout=timedelta(seconds=60)
            )
        return done


WORKFLOWS = [SleepWorkflow, ThreeStepsWorkflow]
ACTIVITIES = [noop]
