"""Starting bulk operations: the row first, then its workflow (`operation/<id>`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from journeys.models import OperationInput, operation_workflow_id
from journeys.outages import bounded
from journeys.store import operations
from journeys.temporal import API_CALL_SECONDS, API_RPC_TIMEOUT
from workflows.bulk import BulkOperationWorkflow


async def start_operation(
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    kind: str,
    subject: dict[str, Any],
    request_key: str | None,
    summary: str,
    before_start: Callable[[uuid.UUID], Awaitable[None]] | None = None,
) -> operations.Operation:
    """The operation under `request_key` (created now, or earlier), its workflow started.

    A second start of the same operation finds its workflow (running or done) and
    leaves it be; when the workflow cannot be started at all, a new row goes again.
    `before_start` runs once the row exists, before the workflow can see it.
    """
    op, created = await operations.create_operation(pool, kind, subject, request_key)
    if before_start is not None:
        await before_start(op.id)
    try:
        await bounded(
            "Temporal",
            client.start_workflow(
                BulkOperationWorkflow.run,
                OperationInput(operation_id=str(op.id)),
                id=operation_workflow_id(str(op.id)),
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                rpc_timeout=API_RPC_TIMEOUT,
                static_summary=summary,
            ),
            API_CALL_SECONDS,
        )
    except WorkflowAlreadyStartedError:
        pass  # started by the first call under this key, and finished since
    except BaseException:
        if created:
            await operations.delete_unstarted(pool, op.id)
        raise
    return op
