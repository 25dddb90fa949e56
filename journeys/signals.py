"""Delivering events to running journeys; a run that has ended is not an error."""

from __future__ import annotations

import structlog
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

log = structlog.get_logger(__name__)


async def deliver(client: Client, workflow_id: str, signal: str, event: BaseModel) -> bool:
    """Signal the participant's current run; False when it has already left."""
    try:
        await client.get_workflow_handle(workflow_id).signal(signal, event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
