"""Handlers of the steps that read or change the participant's profile."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contacts import ContactActivities
    from activities.groups import GroupActivities
    from journeys.conditions import needs_profile
    from journeys.definition import Condition, UpdateContact
    from journeys.definition.steps.profile import (
        AddToProject,
        AddToSelection,
        MembershipStep,
        RemoveFromSelection,
    )
    from journeys.models import (
        ContactSnapshot,
        JournalInput,
        LoadContactInput,
        MembershipInput,
        UpdateContactInput,
    )
    from workflows.steps.common import ACTIVITY_OPTIONS, Participant, visit_key


async def load_profile_for(
    p: Participant, step_id: str, cond: Condition, memberships: list[str]
) -> ContactSnapshot:
    """The profile and memberships `cond` reads, loaded fresh; nothing when it reads none."""
    if not needs_profile(cond):
        return ContactSnapshot(fields={})
    snapshot: ContactSnapshot = await workflow.execute_activity_method(
        ContactActivities.load_contact,
        LoadContactInput(contact_id=p.input.contact_id, memberships=memberships),
        summary=f"load profile for {step_id}",
        **ACTIVITY_OPTIONS,
    )
    return snapshot


async def note_exit(p: Participant, reason: str) -> None:
    """The participant left early: a line in the contact's dossier."""
    info = workflow.info()
    await note(
        p,
        "journey_exited",
        f"Left journey {p.input.journey_key}: {reason}",
        f"exited/{info.workflow_id}/{info.first_execution_run_id}",
        summary="note the exit in the dossier",
    )


async def note(p: Participant, kind: str, title: str, idempotency_key: str, summary: str) -> None:
    """A line in the contact's dossier about this run, written once."""
    await workflow.execute_activity_method(
        ContactActivities.note_journal,
        JournalInput(
            contact_id=p.input.contact_id,
            kind=kind,
            title=title,
            journey_key=p.input.journey_key,
            step=p.state.current_step,
            idempotency_key=idempotency_key,
        ),
        summary=summary,
        **ACTIVITY_OPTIONS,
    )


async def update_contact(p: Participant, step_id: str, step: UpdateContact) -> str:
    await workflow.execute_activity_method(
        ContactActivities.update_contact,
        UpdateContactInput(
            contact_id=p.input.contact_id,
            journey_key=p.input.journey_key,
            step=step_id,
            set=step.set or {},
            ops=[op.model_dump(exclude_none=True) for op in step.ops or []],
            idempotency_key=visit_key(p, step_id),
        ),
        summary=f"update profile ({step_id})",
        **ACTIVITY_OPTIONS,
    )
    return step.next


async def change_membership(p: Participant, step_id: str, step: MembershipStep) -> str:
    add = isinstance(step, (AddToSelection, AddToProject))
    if isinstance(step, (AddToSelection, RemoveFromSelection)):
        kind, key = "selection", step.selection
    else:
        kind, key = "project", step.project
    changed = await workflow.execute_activity_method(
        GroupActivities.change_membership,
        MembershipInput(
            idempotency_key=visit_key(p, step_id),
            contact_id=p.input.contact_id,
            journey_key=p.input.journey_key,
            step=step_id,
            kind=kind,
            key=key,
            add=add,
        ),
        summary=f"{'add to' if add else 'remove from'} {kind} {key}",
        **ACTIVITY_OPTIONS,
    )
    p.record_outcome(("added" if add else "removed") if changed else "unchanged")
    return step.next
