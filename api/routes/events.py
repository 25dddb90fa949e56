from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import IdempotencyKey, PoolDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, error_response, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.schema import exactly_one_of
from journeys.store.events import contact_event, store_contact_event
from journeys.text import StorableModel

router = APIRouter(
    prefix="/events",
    tags=["events"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


class EventIn(StorableModel):
    """A named event for one contact, by id or by external id."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("contact_id", "external_id"))

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
    id: int = Field(description="the stored event; `GET /events/{id}` shows its delivery")
    contact_id: uuid.UUID
    name: str
    at: datetime


class EventDelivery(EventOut):
    data: dict[str, Any]
    status: Literal["pending", "delivered"]
    delivered_at: datetime | None
    delivered_to: list[str] = Field(description="workflow ids of the journeys that received it")
    entries: list[JourneyEntry] = Field(description="journeys with this event as their entry")
    attempts: int = Field(description="deliveries tried so far")
    last_error: str | None = Field(description="why the last try failed, while pending")


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
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EventOut:
    """Store the event; the worker delivers it to every journey the contact is in and
    enrols the contact in journeys entered by this event, within moments.

    The answer comes once the event is stored: Temporal being down delays the
    delivery, it loses nothing. Send an `Idempotency-Key` header to make retries
    (after a 503, say) store the event only once.
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
    return EventOut(id=stored.id, contact_id=stored.contact_id, name=body.name, at=stored.at)


@router.get("/{event_id}", response_model=EventDelivery)
async def read_event(
    event_id: Annotated[int, Path(ge=1, le=2**63 - 1)], pool: PoolDep
) -> EventDelivery:
    """The event and how far its delivery got."""
    row = await contact_event(pool, event_id)
    if row is None:
        raise not_found(f"event {event_id} does not exist")
    return EventDelivery(
        **{k: row[k] for k in ("id", "contact_id", "name", "data", "at", "delivered_at")},
        status="pending" if row["delivered_at"] is None else "delivered",
        delivered_to=row["delivered_to"] or [],
        entries=[JourneyEntry.model_validate(e) for e in row["entries"] or []],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )
