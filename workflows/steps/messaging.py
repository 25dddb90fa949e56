"""Handlers of the steps that send a message to the participant."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.sms import SmsActivities
    from activities.timing import TimingActivities
    from journeys.definition import Notify, SendEmail, SendSms
    from journeys.models import (
        NO_PHONE,
        NotifyInput,
        QuietHoursInput,
        ResolvedWait,
        SendEmailInput,
        SendResult,
        SendSmsInput,
    )
    from workflows.steps.common import (
        ACTIVITY_OPTIONS,
        SEND_OPTIONS,
        Left,
        Participant,
        visit_key,
    )


def _note_send(p: Participant, step_id: str, result: SendResult) -> None:
    # A refused message has its id too: its delivery error may be waited for.
    p.state.message_ids[step_id] = result.message_id
    if result.status == "sent":
        p.state.sent[step_id] = result.message_id
        p.record_outcome("sent")
    else:
        p.record_outcome(f"skipped: {result.reason}")


def _send(p: Participant, step_id: str, step: Any = None) -> dict[str, Any]:
    """What every send input carries, with this visit's idempotency key, and where the
    step's follow-ups are found (its path in the journey version) when it has some."""
    path = None
    if getattr(step, "follow_ups", None) or getattr(step, "link_actions", None):
        follow_up = p.input.follow_up
        path = [*(follow_up.path if follow_up else []), step_id]
    return {
        "idempotency_key": visit_key(p, step_id),
        "workflow_id": workflow.info().workflow_id,
        "journey_key": p.input.journey_key,
        "version": p.input.version,
        "contact_id": p.input.contact_id,
        "step": step_id,
        "follow_up_path": path,
        "transactional": bool(getattr(step, "transactional", None)),
    }


async def _after_quiet_hours(p: Participant, step_id: str, step: SendEmail | SendSms) -> None:
    """Wait while the journey's quiet hours hold for the contact (their local time,
    which only an activity can read). Journeys without quiet hours ask nothing."""
    quiet = p.input.definition.quiet_hours
    if quiet is None or step.transactional:
        return
    resolved: ResolvedWait = await workflow.execute_activity_method(
        TimingActivities.end_of_quiet_hours,
        QuietHoursInput(
            contact_id=p.input.contact_id, step=step_id, start=quiet.start, end=quiet.end
        ),
        summary=f"quiet hours before {step_id}?",
        **ACTIVITY_OPTIONS,
    )
    if resolved.until is None or resolved.until <= workflow.now():
        return
    p.describe(
        f"Quiet hours ({quiet.start}-{quiet.end}, the contact's time): `{step_id}` "
        f"sends at {resolved.until:%Y-%m-%d %H:%M} UTC."
    )
    await _hold(p, step_id, resolved.until - workflow.now(), "quiet hours")


async def _hold(p: Participant, step_id: str, wait: timedelta, what: str) -> None:
    """Keep the message back for `wait` (quiet hours, a frequency cap), then ask exit_if
    as before any step: what the pause's signals did not bring up (a selection, a
    message's history) may have made it hold meanwhile."""
    await p.pause(wait, f"{what} before {step_id}")
    await p.check_leave(step_id, f"after the {what} before")


# The shortest wait for a deferred message before the cap is asked again.
CAP_RECHECK = timedelta(minutes=1)


async def _send_when_allowed(
    p: Participant, step_id: str, step: SendEmail | SendSms, call: Callable[[], Awaitable[Any]]
) -> SendResult:
    """`call` (the send activity) once the quiet hours are over; while the channel's
    frequency cap defers the message, wait until it allows and try again (the same
    visit: the same idempotency key)."""
    while True:
        await _after_quiet_hours(p, step_id, step)
        result: SendResult = await call()
        if result.status != "deferred" or result.until is None:
            return result
        p.describe(
            f"Frequency cap ({result.reason}): `{step_id}` tries again at "
            f"{result.until:%Y-%m-%d %H:%M} UTC."
        )
        # At least a minute: with the database's clock behind the worker's, a moment
        # already passed here would otherwise be asked about again and again at once.
        await _hold(p, step_id, max(result.until - workflow.now(), CAP_RECHECK), "frequency cap")


async def send_email(p: Participant, step_id: str, step: SendEmail) -> str:
    input = SendEmailInput(
        **_send(p, step_id, step),
        subject=step.subject,
        html=step.html,
        text=step.text,
        sender=step.sender,
        attachments=step.attachments or [],
    )
    result = await _send_when_allowed(
        p,
        step_id,
        step,
        lambda: workflow.execute_activity_method(
            EmailActivities.send_email, input, summary=f"send {step_id}", **SEND_OPTIONS
        ),
    )
    _note_send(p, step_id, result)
    return step.next


async def notify(p: Participant, step_id: str, step: Notify) -> str:
    result = await workflow.execute_activity_method(
        EmailActivities.notify,
        NotifyInput(
            **_send(p, step_id),
            to=step.to,
            subject=step.subject,
            body=step.body,
        ),
        summary=f"notify {step.to}",
        **SEND_OPTIONS,
    )
    p.record_outcome("sent" if result.status == "sent" else f"skipped: {result.reason}")
    return step.next


async def send_sms(p: Participant, step_id: str, step: SendSms) -> str:
    input = SendSmsInput(
        **_send(p, step_id, step),
        sender=step.sender,
        text=step.text,
        max_segments=step.max_segments,
    )
    result = await _send_when_allowed(
        p,
        step_id,
        step,
        lambda: workflow.execute_activity_method(
            SmsActivities.send_sms, input, summary=f"send SMS {step_id}", **SEND_OPTIONS
        ),
    )
    _note_send(p, step_id, result)
    if result.status == "skipped" and result.reason == NO_PHONE and step.if_no_phone == "exit":
        raise Left("exited", f"no phone number for `{step_id}`")
    return step.next
