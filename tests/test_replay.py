"""Recorded histories replayed against the current workflow code (O3).

A change to workflows/ that would break a running journey fails here. Record
fresh histories with `JOURNEYS_RECORD_HISTORIES=1 pytest tests/test_workflow.py`
(or another file of workflow tests: follow-up runs are recorded by
tests/test_followups.py)
and keep the old ones: runs recorded on older code must still replay.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from journeys.models import (
    SA_JOURNEY,
    SA_PARTICIPANT,
    follow_up_workflow_id,
    journey_workflow_id,
)
from worker import WORKFLOWS
from workflows.steps import HANDLERS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_recorded_histories() -> None:
    assert len(HISTORIES) >= 3


def recorded_workflow_id(history: dict[str, Any]) -> str:
    """The run's own id, from the search attributes it started with: commands that
    carry it (a child workflow's id) must match on replay. Bulk operations and
    selection entries put their id in no command."""
    started = history["events"][0]["workflowExecutionStartedEventAttributes"]
    if started["workflowType"]["name"] != "JourneyWorkflow":
        return "recorded"
    fields = started["searchAttributes"]["indexedFields"]

    def value(name: str) -> str:
        return str(json.loads(base64.b64decode(fields[name]["data"])))

    run_input = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    follow_up = run_input.get("follow_up")
    if follow_up:
        return follow_up_workflow_id(
            run_input["journey_key"], follow_up["message_id"], follow_up["key"]
        )
    return journey_workflow_id(value(SA_JOURNEY), value(SA_PARTICIPANT))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_on_current_code(path: Path) -> None:
    text = path.read_text()
    history = WorkflowHistory.from_json(recorded_workflow_id(json.loads(text)), text)
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


def test_every_step_kind_and_workflow_type_has_a_recorded_history() -> None:
    """A change to any handler or workflow is checked against a real run of it."""
    kinds: set[str] = set()
    types: set[str] = set()
    for path in HISTORIES:
        started = json.loads(path.read_text())["events"][0][
            "workflowExecutionStartedEventAttributes"
        ]
        types.add(started["workflowType"]["name"])
        if started["workflowType"]["name"] == "JourneyWorkflow":
            run_input = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
            steps = [run_input["definition"]["steps"]]
            follow_up = run_input.get("follow_up")
            if follow_up:
                steps.append(follow_up.get("steps", {}))
            kinds |= {step["type"] for group in steps for step in group.values()}
    models: list[type[BaseModel]] = list(HANDLERS)
    step_kinds = {get_args(model.model_fields["type"].annotation)[0] for model in models}
    assert step_kinds - kinds == set(), "step kinds without a recorded history"
    # The SDK keeps a workflow's registered name on its definition (no public getter).
    workflow_types = {workflow._Definition.must_from_class(w).name for w in WORKFLOWS}
    assert workflow_types - types == set(), "workflows without a recorded history"
