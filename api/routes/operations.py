"""Bulk operations in the background: how far they are."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import PoolDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.models import operation_workflow_id
from journeys.store.operations import get_operation

router = APIRouter(
    prefix="/operations",
    tags=["operations"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


class OperationView(BaseModel):
    id: uuid.UUID
    kind: str = Field(description="enrol_selection or generate_action")
    subject: dict[str, Any] = Field(description="what it works on")
    status: Literal["running", "completed", "failed"]
    done: int = Field(description="targets done so far")
    total: int | None = Field(description="targets, once the selection was frozen")
    counts: dict[str, int] = Field(
        description="outcomes: enrolled, already_enrolled, refused, failed, ..."
    )
    errors: list[dict[str, Any]] = Field(description="the first 100 targets that failed, why")
    workflow_id: str = Field(description="the operation's run in the Temporal web UI")
    created_at: datetime
    finished_at: datetime | None


@router.get("/{operation_id}", response_model=OperationView)
async def read_operation(operation_id: uuid.UUID, pool: PoolDep) -> OperationView:
    op = await get_operation(pool, operation_id)
    if op is None:
        raise not_found(f"operation {operation_id} does not exist")
    return OperationView(**op.__dict__, workflow_id=operation_workflow_id(str(op.id)))
