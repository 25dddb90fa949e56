"""Handlers of the steps that send a message to the participant."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from journeys.definition import SendEmail
    from journeys.models import SendEmailInput, SendResult
    from workflows.steps.common import SEND_OPTIONS, Participant, send_key


def _note_send(p: Participant, step_id: str, result: SendResult) -> None:
    if result.status == "sent":
        p.state.sent[step_id] = result.message_id
        p.record_outcome("sent")
    else:
        p.record_outcome(f"skipped: {result.reason}")


async def send_email(p: Participant, step_id: str, step: SendEmail) -> str:
    key = send_key(p, step_id)
    info = workflow.info()
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
    _note_send(p, step_id, result)
    return step.next
