"""Handlers of the steps that choose the way on, or end the journey."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from journeys.conditions import evaluate
    from journeys.definition import Branch, End
    from workflows.steps.common import Participant
    from workflows.steps.profile import load_profile_for


async def branch(p: Participant, step_id: str, step: Branch) -> str:
    fields: dict[str, Any] = await load_profile_for(p, step_id, step.if_)
    taken = evaluate(step.if_, fields, p.state)
    p.record_outcome("then" if taken else "else")
    return step.then if taken else step.else_


async def end(p: Participant, step_id: str, step: End) -> None:
    return None
