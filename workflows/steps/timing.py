"""Handlers of the steps in which the participant waits."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from journeys.conditions import message_was
    from journeys.definition import MessageWas, Wait, WaitForEvent, parse_duration
    from workflows.steps.common import Participant


async def wait(p: Participant, step_id: str, step: Wait) -> str:
    duration = parse_duration(step.duration)
    p.describe(f"Waiting at `{step_id}` until {workflow.now() + duration:%Y-%m-%d %H:%M} UTC.")
    await workflow.sleep(duration, summary=step_id)
    return step.next


async def wait_for_event(p: Participant, step_id: str, step: WaitForEvent) -> str:
    timeout = parse_duration(step.timeout)
    first_new = len(p.state.contact_events)

    def happened() -> bool:
        if step.event == "custom":
            return any(e.name == step.name for e in p.state.contact_events[first_new:])
        assert step.message is not None  # the definition check guarantees it
        # An open or click counts also when it came before this step started.
        return message_was(
            MessageWas(message=step.message, event=step.event, link=step.link), p.state
        )

    what = step.name if step.event == "custom" else f"{step.event} on `{step.message}`"
    p.describe(
        f"Waiting at `{step_id}` for {what} until "
        f"{workflow.now() + timeout:%Y-%m-%d %H:%M} UTC, then `{step.on_timeout}`."
    )
    try:
        await workflow.wait_condition(happened, timeout=timeout, timeout_summary=step_id)
    except TimeoutError:
        p.record_outcome("timeout")
        return step.on_timeout
    p.record_outcome(step.event)
    return step.on_event
