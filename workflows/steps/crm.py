"""Handlers of the steps that create records for colleagues or call other systems."""

from __future__ import annotations

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from journeys.definition import CreateActivity, CreateRequest, CreateSale, RunScript
    from journeys.models import CreatedRecord, CreateRecordInput, ScriptCallInput
    from workflows.script import ScriptCallWorkflow
    from workflows.steps.common import ACTIVITY_OPTIONS, Participant, visit_key


async def _create(p: Participant, step_id: str, record: CreateRecordInput) -> None:
    created: CreatedRecord = await workflow.execute_activity_method(
        CrmActivities.create_record,
        record,
        summary=f"create {record.kind} ({step_id})",
        **ACTIVITY_OPTIONS,
    )
    p.record_outcome(f"{record.kind} for {created.owner or 'nobody'} ({created.assigned_by})")


def _record(p: Participant, step_id: str, kind: str, title: str) -> dict[str, object]:
    return {
        "idempotency_key": visit_key(p, step_id),
        "kind": kind,
        "contact_id": p.input.contact_id,
        "journey_key": p.input.journey_key,
        "step": step_id,
        "title": title,
    }


async def create_activity(p: Participant, step_id: str, step: CreateActivity) -> str:
    await _create(
        p,
        step_id,
        CreateRecordInput.model_validate(
            {
                **_record(p, step_id, "activity", step.title),
                "record_type": step.activity_type,
                "status": "open",
                "owner": step.owner.model_dump(),
                "due_in": step.due_in,
                "slot": step.first_free_slot.duration if step.first_free_slot else None,
            }
        ),
    )
    return step.next


async def create_request(p: Participant, step_id: str, step: CreateRequest) -> str:
    await _create(
        p,
        step_id,
        CreateRecordInput.model_validate(
            {
                **_record(p, step_id, "request", step.title),
                "record_type": step.request_type,
                "status": step.status,
                "details": {
                    "category": step.category,
                    "priority": step.priority,
                    "message": step.message,
                },
                "owner": step.owner.model_dump(),
                "category": step.category,
            }
        ),
    )
    return step.next


async def create_sale(p: Participant, step_id: str, step: CreateSale) -> str:
    await _create(
        p,
        step_id,
        CreateRecordInput.model_validate(
            {
                **_record(p, step_id, "sale", step.title),
                "record_type": step.sale_type,
                "status": step.stage,
                "details": {"amount": step.amount, "currency": step.currency},
                "owner": step.owner.model_dump(),
            }
        ),
    )
    return step.next


async def run_script(p: Participant, step_id: str, step: RunScript) -> str:
    """Start the call as a workflow of its own that outlives this step (and the
    journey): the participant moves on at once."""
    key = visit_key(p, step_id)
    await workflow.start_child_workflow(
        ScriptCallWorkflow.run,
        ScriptCallInput(
            idempotency_key=key,
            url=str(step.url),
            contact_id=p.input.contact_id,
            journey_key=p.input.journey_key,
            version=p.input.version,
            step=step_id,
            participant=workflow.info().workflow_id,
        ),
        id=f"script/{key}",
        parent_close_policy=ParentClosePolicy.ABANDON,
        static_summary=f"run_script {step_id} of {p.input.journey_key}",
    )
    p.record_outcome("script call started")
    return step.next
