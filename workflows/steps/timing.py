"""Handlers of the steps in which the participant waits."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.timing import TimingActivities
    from journeys.conditions import message_was
    from journeys.definition import MessageWas, Wait, WaitForEvent, parse_duration
    from journeys.models import ResolvedWait, ResolveWaitInput
    from workflows.steps.common import ACTIVITY_OPTIONS, Participant


async def wait(p: Participant, step_id: str, step: Wait) -> str:
    if step.duration is not None:
        until = workflow.now() + parse_duration(step.duration)
    elif step.until is not None:
        until = step.until
    else:
        resolved: ResolvedWait = await workflow.execute_activity_method(
            TimingActivities.resolve_wait,
            ResolveWaitInput(
                contact_id=p.input.contact_id,
                step=step_id,
                until_field=step.until_field,
                anniversary=step.anniversary,
                offset=step.offset,
                at=step.at,
                weekdays=step.weekdays,
            ),
            summary=f"work out the moment of {step_id}",
            **ACTIVITY_OPTIONS,
        )
        if resolved.until is None:
            p.record_outcome(f"moved on: {resolved.reason}")
            return step.next
        until = resolved.until
    return await _sleep_until(p, step_id, until, step.next)


async def _sleep_until(p: Participant, step_id: str, until: datetime, next_step: str) -> str:
    left = until - workflow.now()
    if left <= timedelta(0):
        p.record_outcome("the moment had passed")
        return next_step
    p.describe(f"Waiting at `{step_id}` until {until:%Y-%m-%d %H:%M} UTC.")
    await p.pause(left, step_id)
    return next_step


async def wait_for_event(p: Participant, step_id: str, step: WaitForEvent) -> str:
    timeout = parse_duration(step.timeout)
    # Counted from the journey's first event, so that dropping old ones keeps the place.
    first_new = p.state.contact_events_dropped + len(p.state.contact_events)

    def happened() -> bool:
        if step.event == "custom":
            start = max(0, first_new - p.state.contact_events_dropped)
            return any(e.name == step.name for e in p.state.contact_events[start:])
        assert step.message is not None  # the definition check guarantees it
        # An open or click counts also when it came before this step started.
        return message_was(
            MessageWas(message=step.message, event=step.event, link=step.link, kinds=step.kinds),
            p.state,
            p.links_match,
        )

    what = step.name if step.event == "custom" else f"{step.event} on `{step.message}`"
    p.describe(
        f"Waiting at `{step_id}` for {what} until "
        f"{workflow.now() + timeout:%Y-%m-%d %H:%M} UTC, then `{step.on_timeout}`."
    )
    if not await p.pause(timeout, step_id, happened):
        p.record_outcome("timeout")
        return step.on_timeout
    p.record_outcome(step.event)
    return step.on_event
