"""Handlers of the steps that choose the way on, or end the journey."""

from __future__ import annotations

import hashlib

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from journeys.conditions import evaluate, facts_read
    from journeys.definition import Branch, End, Split
    from workflows.steps.common import Participant
    from workflows.steps.profile import load_profile_for


async def branch(p: Participant, step_id: str, step: Branch) -> str:
    snapshot = await load_profile_for(p, step_id, step.if_, facts_read(step.if_))
    taken = evaluate(step.if_, snapshot.fields, p.state, snapshot.memberships, p.links_match)
    p.record_outcome("then" if taken else "else")
    return step.then if taken else step.else_


def split_bucket(journey_key: str, contact_id: str, step_id: str) -> int:
    """0-99, a function of participant and step alone: the same in every replay and
    every run, and independent between the splits of a journey."""
    digest = hashlib.sha256(f"{journey_key}/{contact_id}/{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


async def split(p: Participant, step_id: str, step: Split) -> str:
    bucket = split_bucket(p.input.journey_key, p.input.contact_id, step_id)
    upper = 0
    for number, b in enumerate(step.branches, start=1):
        upper += b.percent
        if bucket < upper:
            p.record_outcome(f"branch {number} ({b.percent}%)")
            return b.next
    raise AssertionError("the percentages of a published split add up to 100")


async def end(p: Participant, step_id: str, step: End) -> None:
    return None
