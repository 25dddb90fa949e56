"""Firing follow-ups: which rules an event on a message triggers, and starting their runs.

A follow-up run is a `JourneyWorkflow` whose definition is the rule's steps and
whose input says it is a follow-up (`FollowUpRun`): it waits, checks `run_if`,
then runs the steps. Its workflow id is built from the message and the rule and
may be used once only (`REJECT_DUPLICATE`), so a rule fires at most once per
message, however many events match it and however long after its first run ended.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from journeys import metrics
from journeys.definition import JourneyDefinition, parse_duration
from journeys.definition.followups import DEFAULT_LISTEN, FollowUp, same_link
from journeys.definition.journey import ApiEntry
from journeys.definition.steps.messaging import MessageStep
from journeys.models import (
    SA_FOLLOW_UP,
    SA_MESSAGE_STEP,
    FollowUpRun,
    JourneyInput,
    follow_up_workflow_id,
    run_search_attributes,
)
from journeys.outages import bounded
from journeys.store.journeys import PublishedJourney
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from workflows.journey import JourneyWorkflow


def message_step(definition: JourneyDefinition, path: list[str]) -> MessageStep | None:
    """The message step at `path` ([step] or [step, rule key, step, ...]); None when the
    version has no such step (a path from another version cannot happen, but a
    missing step must not stop the dispatcher)."""
    steps: dict[str, Any] = definition.steps
    step: Any = steps.get(path[0]) if path else None
    for i in range(1, len(path) - 1, 2):
        rule = next((r for r in getattr(step, "follow_ups", None) or [] if r.key == path[i]), None)
        if rule is None:
            return None
        step = rule.steps.get(path[i + 1])
    return step if isinstance(step, MessageStep) else None


def triggered(
    step: MessageStep,
    kind: str,
    *,
    url: str | None,
    error: str | None,
    at: datetime,
    listening_since: datetime,
) -> list[FollowUp]:
    """The step's rules an event of `kind` fires: while the message is listened to."""
    if at > listening_since + parse_duration(step.listen or DEFAULT_LISTEN):
        return []
    return [
        rule
        for rule in step.rules()
        if rule.on == kind
        and (rule.link is None or same_link(url, rule.link))
        and (rule.kinds is None or error in rule.kinds)
    ]


def follow_up_input(
    journey: PublishedJourney,
    contact_id: uuid.UUID,
    message_id: uuid.UUID,
    path: list[str],
    rule: FollowUp,
) -> JourneyInput:
    definition = JourneyDefinition(
        key=journey.key,
        name=f"{journey.name}: follow-up {rule.key} of {path[-1]}",
        entry=ApiEntry(type="api"),
        start=rule.start,
        steps=rule.steps,
        # The journey's quiet hours hold for its follow-ups' messages too.
        quiet_hours=journey.definition.quiet_hours,
    )
    return JourneyInput(
        journey_key=journey.key,
        version=journey.version,
        contact_id=str(contact_id),
        definition=definition,
        follow_up=FollowUpRun(
            message_id=str(message_id),
            path=[*path, rule.key],
            key=rule.key,
            trigger=rule.on,
            wait=rule.wait,
            run_if=rule.run_if,
        ),
    )


async def start_follow_up(
    client: Client,
    task_queue: str,
    journey: PublishedJourney,
    contact_id: uuid.UUID,
    message_id: uuid.UUID,
    path: list[str],
    rule: FollowUp,
) -> str:
    """Start the rule's run for this message, unless it fired for it before; its
    workflow id either way."""
    workflow_id = follow_up_workflow_id(journey.key, str(message_id), rule.key)
    attributes = run_search_attributes(
        journey.key,
        journey.version,
        str(contact_id),
        rule.start,
        **{SA_FOLLOW_UP: rule.key, SA_MESSAGE_STEP: "/".join(path)},
    )
    try:
        await bounded(
            "Temporal",
            client.start_workflow(
                JourneyWorkflow.run,
                follow_up_input(journey, contact_id, message_id, path, rule),
                id=workflow_id,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                rpc_timeout=API_RPC_TIMEOUT,
                search_attributes=attributes,
                static_summary=(
                    f"{journey.name} (v{journey.version}): follow-up {rule.key} of "
                    f"{'/'.join(path)} on {rule.on}, participant {contact_id}"
                ),
            ),
            API_CALL_SECONDS,
        )
    except WorkflowAlreadyStartedError:
        pass  # fired before (or by an earlier try of this delivery)
    else:
        metrics.follow_up_fired(journey.key, rule.on)
    return workflow_id
