from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from pydantic import BaseModel, Field, model_validator

from api.deps import PoolDep, SettingsDep, TemporalDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, error_response, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.enrolment import enter_journeys
from journeys.models import ContactEvent
from journeys.signals import deliver
from journeys.store.events import finish_event_delivery, store_contact_event
from journeys.text import StorableModel
from workflows.journey import JourneyWorkflow

router = APIRouter(
    prefix="/events",
    tags=["events"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


class EventIn(StorableModel):
    """A named event for one contact, by id or by external id."""

    contact_id: uuid.UUID | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_contact(self) -> EventIn:
        if (self.contact_id is None) == (self.external_id is None):
            raise ValueError("give exactly one of contact_id and external_id")
        return self


class JourneyEntry(BaseModel):
    journey_key: str
    status: str = Field(description="enrolled, already_enrolled or refused")
    reason: str | None = None


class EventOut(BaseModel):
    id: int = Field(description="the stored event")
    contact_id: uuid.UUID
    name: str
    at: datetime
    delivered_to: list[str] = Field(description="workflow ids of the journeys that received it")
    entries: list[JourneyEntry] = Field(
        default_factory=list, description="journeys with this event as their entry"
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="the same key on a retry stores and delivers the event only once",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=EventOut,
    responses={
        200: {
            "description": "a retry with a known Idempotency-Key: the event stored earlier",
            "model": EventOut,
        },
        409: error_response("the Idempotency-Key was used for a different event"),
    },
)
async def post_event(
    body: EventIn,
    pool: PoolDep,
    client: TemporalDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EventOut:
    """Store the event and deliver it to every journey the contact is in.

    Send an `Idempotency-Key` header to make retries safe: a retry (after a 503,
    say) stores nothing new and finishes a delivery the first call could not.
    """
    stored = await store_contact_event(
        pool, body.contact_id, body.external_id, body.name, body.data, idempotency_key
    )
    if stored is None:
        raise not_found(f"contact {body.contact_id or body.external_id!r} does not exist")
    if not stored.created:
        same_contact = (
            stored.contact_id == body.contact_id
            if body.contact_id is not None
            else stored.external_id == body.external_id
        )
        if (stored.name, stored.data) != (body.name, body.data) or not same_contact:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                "this Idempotency-Key was used for a different event",
            )
        response.status_code = status.HTTP_200_OK
    delivered, entries = stored.delivered_to, []
    if delivered is None:
        event = ContactEvent(id=stored.id, name=body.name, data=body.data, at=stored.at)
        delivered = [
            workflow_id
            for workflow_id in stored.workflow_ids
            if await deliver(client, workflow_id, JourneyWorkflow.contact_event, event)
        ]
        entries = await enter_journeys(
            client,
            pool,
            settings.task_queue,
            {"type": "event", "name": body.name},
            stored.contact_id,
        )
        await finish_event_delivery(pool, stored.id, delivered)
    return EventOut(
        id=stored.id,
        contact_id=stored.contact_id,
        name=body.name,
        at=stored.at,
        delivered_to=delivered,
        entries=[
            JourneyEntry(journey_key=key, status=e.status, reason=e.reason) for key, e in entries
        ],
    )
