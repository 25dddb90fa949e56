from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response, status

from api.deps import PoolDep, require_api_key
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.contacts import Contact, ContactIn
from journeys.store.contacts import get_contact, upsert_contact

router = APIRouter(
    prefix="/contacts",
    tags=["contacts"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **NOT_FOUND_RESPONSE, **OUTAGE_RESPONSE},
)


@router.post(
    "",
    response_model=Contact,
    responses={200: {"description": "updated"}, 201: {"description": "created"}},
)
async def create_or_update_contact(body: ContactIn, pool: PoolDep, response: Response) -> Contact:
    """Create a contact, or update the one with the same `external_id`."""
    contact, created = await upsert_contact(pool, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return contact


@router.get("/{contact_id}", response_model=Contact)
async def read_contact(contact_id: uuid.UUID, pool: PoolDep) -> Contact:
    contact = await get_contact(pool, contact_id)
    if contact is None:
        raise not_found(f"contact {contact_id} does not exist")
    return contact
