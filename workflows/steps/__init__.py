"""One small handler per step kind, by family. A handler runs the step and
returns the id of the next step, or None when the participant leaves.

Adding a step kind: its model in `journeys/definition/steps/<family>.py`, its
handler in `workflows/steps/<family>.py` and in `HANDLERS`, and, if it has a
side effect, an activity registered by `worker.bound_activities`
(`tests/test_catalogue.py` checks that the three cover each other).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from journeys.definition import (
        AddToProject,
        AddToSelection,
        Branch,
        CreateActivity,
        CreateRequest,
        CreateSale,
        End,
        Notify,
        RemoveFromProject,
        RemoveFromSelection,
        RunScript,
        SendEmail,
        SendSms,
        Split,
        UpdateContact,
        Wait,
        WaitForEvent,
    )
    from workflows.steps.common import Participant
    from workflows.steps.crm import create_activity, create_request, create_sale, run_script
    from workflows.steps.flow import branch, end, split
    from workflows.steps.messaging import notify, send_email, send_sms
    from workflows.steps.profile import change_membership, update_contact
    from workflows.steps.timing import wait, wait_for_event

Handler = Callable[[Participant, str, Any], Awaitable[str | None]]
HANDLERS: dict[type, Handler] = {
    SendEmail: send_email,
    Wait: wait,
    WaitForEvent: wait_for_event,
    Branch: branch,
    Split: split,
    UpdateContact: update_contact,
    AddToSelection: change_membership,
    RemoveFromSelection: change_membership,
    AddToProject: change_membership,
    RemoveFromProject: change_membership,
    CreateActivity: create_activity,
    CreateRequest: create_request,
    CreateSale: create_sale,
    RunScript: run_script,
    Notify: notify,
    SendSms: send_sms,
    End: end,
}


async def run_step(p: Participant, step_id: str, step: Any) -> str | None:
    return await HANDLERS[type(step)](p, step_id, step)
