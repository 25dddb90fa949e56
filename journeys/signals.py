"""Delivering events to running journeys; a run that has ended is not an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from journeys.outages import bounded
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT


async def deliver(
    client: Client, workflow_id: str, signal: Callable[[Any, Any], None], event: BaseModel
) -> bool:
    """Signal the participant's current run; False when it has already left."""
    try:
        await bounded(
            "Temporal",
            client.get_workflow_handle(workflow_id).signal(
                signal, event, rpc_timeout=API_RPC_TIMEOUT
            ),
            API_CALL_SECONDS,
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
