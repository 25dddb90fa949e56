"""Handlers of the steps that send a message to the participant."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.sms import SmsActivities
    from journeys.definition import Notify, SendEmail, SendSms
    from journeys.models import NO_PHONE, NotifyInput, SendEmailInput, SendResult, SendSmsInput
    from workflows.steps.common import SEND_OPTIONS, Left, Participant, visit_key


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
    }


async def send_email(p: Participant, step_id: str, step: SendEmail) -> str:
    result = await workflow.execute_activity_method(
        EmailActivities.send_email,
        SendEmailInput(
            **_send(p, step_id, step),
            subject=step.subject,
            html=step.html,
            text=step.text,
            sender=step.sender,
            attachments=step.attachments or [],
        ),
        summary=f"send {step_id}",
        **SEND_OPTIONS,
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
    result = await workflow.execute_activity_method(
        SmsActivities.send_sms,
        SendSmsInput(**_send(p, step_id, step), sender=step.sender, text=step.text),
        summary=f"send SMS {step_id}",
        **SEND_OPTIONS,
    )
    _note_send(p, step_id, result)
    if result.status == "skipped" and result.reason == NO_PHONE and step.if_no_phone == "exit":
        raise Left("exited", f"no phone number for `{step_id}`")
    return step.next
