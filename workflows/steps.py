"""One small handler per step kind. A handler runs the step and returns the id
of the next step, or None when the participant leaves the journey.

Adding a step kind: its model in `journeys/definition.py`, its handler here,
and, if it has a side effect, an activity.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contacts import ContactActivities
    from activities.email import EmailActivities
    from journeys.conditions import evaluate, message_was, needs_profile
    from journeys.definition import (
        Branch,
        End,
        MessageWas,
        SendEmail,
        UpdateContact,
        Wait,
        WaitForEvent,
        parse_duration,
    )
    from journeys.models import (
        JourneyInput,
        JourneyState,
        LoadContactInput,
        SendEmailInput,
        UpdateContactInput,
    )

# Provider outages are retried for as long as they last, at most every 5 minutes;
# activities raise non-retryable errors for bad input.
ACTIVITY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=5)),
}
# A send heartbeats while it lasts longer than a couple of seconds (a slow relay,
# marking it sent through a PostgreSQL restart), so a crashed worker's send is
# retried after the heartbeat timeout rather than a long start-to-close timeout.
SEND_OPTIONS: dict[str, Any] = {
    **ACTIVITY_OPTIONS,
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=10),
}


class Participant(Protocol):
    input: JourneyInput
    state: JourneyState

    def describe(self, details: str) -> None: ...
    def record_outcome(self, outcome: str) -> None: ...


async def send_email(p: Participant, step_id: str, step: SendEmail) -> str:
    occurrence = p.state.occurrences.get(step_id, 0) + 1
    p.state.occurrences[step_id] = occurrence
    info = workflow.info()
    # Stable across retries, replays and continue-as-new; new for a re-entry.
    key = f"{info.workflow_id}/{info.first_execution_run_id}/{step_id}/{occurrence}"
    result = await workflow.execute_activity_method(
        EmailActivities.send_email,
        SendEmailInput(
            idempotency_key=key,
            workflow_id=info.workflow_id,
            journey_key=p.input.journey_key,
            version=p.input.version,
            contact_id=p.input.contact_id,
            step=step_id,
            subject=step.subject,
            html=step.html,
            text=step.text,
            sender=step.sender,
        ),
        summary=f"send {step_id}",
        **SEND_OPTIONS,
    )
    if result.status == "sent":
        p.state.sent[step_id] = result.message_id
        p.record_outcome("sent")
    else:
        p.record_outcome(f"skipped: {result.reason}")
    return step.next


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


async def branch(p: Participant, step_id: str, step: Branch) -> str:
    fields: dict[str, Any] = {}
    if needs_profile(step.if_):
        snapshot = await workflow.execute_activity_method(
            ContactActivities.load_contact,
            LoadContactInput(contact_id=p.input.contact_id),
            summary=f"load profile for {step_id}",
            **ACTIVITY_OPTIONS,
        )
        fields = snapshot.fields
    taken = evaluate(step.if_, fields, p.state)
    p.record_outcome("then" if taken else "else")
    return step.then if taken else step.else_


async def update_contact(p: Participant, step_id: str, step: UpdateContact) -> str:
    await workflow.execute_activity_method(
        ContactActivities.update_contact,
        UpdateContactInput(
            contact_id=p.input.contact_id,
            journey_key=p.input.journey_key,
            step=step_id,
            set=step.set,
        ),
        summary=f"update profile ({step_id})",
        **ACTIVITY_OPTIONS,
    )
    return step.next


async def end(p: Participant, step_id: str, step: End) -> None:
    return None


Handler = Callable[[Participant, str, Any], Awaitable[str | None]]
HANDLERS: dict[type, Handler] = {
    SendEmail: send_email,
    Wait: wait,
    WaitForEvent: wait_for_event,
    Branch: branch,
    UpdateContact: update_contact,
    End: end,
}


async def run_step(p: Participant, step_id: str, step: Any) -> str | None:
    return await HANDLERS[type(step)](p, step_id, step)
