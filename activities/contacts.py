"""Reading and changing the participant's profile."""

from __future__ import annotations

import uuid

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from journeys.contacts import Contact, profile
from journeys.models import ContactSnapshot, LoadContactInput, UpdateContactInput
from journeys.store.contacts import get_contact, set_fields


async def require_contact(pool: asyncpg.Pool, contact_id: str) -> Contact:
    """The participant's contact; its absence is not something a retry can fix."""
    contact = await get_contact(pool, uuid.UUID(contact_id))
    if contact is None:
        raise ApplicationError(f"contact {contact_id} does not exist", non_retryable=True)
    return contact


class ContactActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="load_contact")
    async def load_contact(self, input: LoadContactInput) -> ContactSnapshot:
        return ContactSnapshot(fields=profile(await require_contact(self.pool, input.contact_id)))

    @activity.defn(name="update_contact")
    async def update_contact(self, input: UpdateContactInput) -> None:
        # Setting fields is idempotent, so a retry needs no key of its own.
        if not await set_fields(self.pool, uuid.UUID(input.contact_id), input.set):
            raise ApplicationError(
                f"step '{input.step}': contact {input.contact_id} does not exist",
                non_retryable=True,
            )
