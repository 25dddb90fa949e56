from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from api.deps import PoolDep, TemporalDep, require_api_key
from api.errors import not_found
from journeys.models import ContactEvent
from journeys.signals import deliver

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_api_key)])


class EventIn(BaseModel):
    """A named event for one contact, by id or by external id."""

    contact_id: uuid.UUID | None = None
    external_id: str | None = None
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_contact(self) -> EventIn:
        if (self.contact_id is None) == (self.external_id is None):
            raise ValueError("give exactly one of contact_id and external_id")
        return self


class EventOut(BaseModel):
    contact_id: uuid.UUID
    name: str
    at: datetime
    delivered_to: list[str] = Field(description="workflow ids of the journeys that received it")


@router.post("", status_code=202, response_model=EventOut)
async def post_event(body: EventIn, pool: PoolDep, client: TemporalDep) -> EventOut:
    """Store the event and deliver it to every journey the contact is in."""
    row = await pool.fetchrow(
        """
        WITH c AS (SELECT id FROM contacts WHERE id = $1 OR ($1 IS NULL AND external_id = $2))
        INSERT INTO contact_events (contact_id, name, data) SELECT id, $3, $4 FROM c
        RETURNING contact_id, at
        """,
        body.contact_id,
        body.external_id,
        body.name,
        body.data,
    )
    if row is None:
        raise not_found(f"contact {body.contact_id or body.external_id!r} does not exist")
    event = ContactEvent(name=body.name, data=body.data, at=datetime.now(UTC))
    delivered = []
    for enrolment in await pool.fetch(
        "SELECT workflow_id FROM enrolments WHERE contact_id = $1", row["contact_id"]
    ):
        if await deliver(client, enrolment["workflow_id"], "contact_event", event):
            delivered.append(enrolment["workflow_id"])
    return EventOut(
        contact_id=row["contact_id"], name=body.name, at=row["at"], delivered_to=delivered
    )
