"""Handlers of the steps that read or change the participant's profile."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contacts import ContactActivities
    from journeys.conditions import needs_profile
    from journeys.definition import Condition, UpdateContact
    from journeys.models import ContactSnapshot, LoadContactInput, UpdateContactInput
    from workflows.steps.common import ACTIVITY_OPTIONS, Participant


async def load_profile_for(p: Participant, step_id: str, cond: Condition) -> dict[str, Any]:
    """The profile fields `cond` reads, loaded fresh; nothing when it reads none."""
    if not needs_profile(cond):
        return {}
    snapshot: ContactSnapshot = await workflow.execute_activity_method(
        ContactActivities.load_contact,
        LoadContactInput(contact_id=p.input.contact_id),
        summary=f"load profile for {step_id}",
        **ACTIVITY_OPTIONS,
    )
    return snapshot.fields


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
