"""Reading and changing the participant's profile."""

from __future__ import annotations

import uuid

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from journeys.contacts import get_contact, profile, set_fields
from journeys.models import ContactSnapshot, LoadContactInput, UpdateContactInput


class ContactActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="load_contact")
    async def load_contact(self, input: LoadContactInput) -> ContactSnapshot:
        contact = await get_contact(self.pool, uuid.UUID(input.contact_id))
        if contact is None:
            raise ApplicationError(f"contact {input.contact_id} does not exist", non_retryable=True)
        return ContactSnapshot(fields=profile(contact))

    @activity.defn(name="update_contact")
    async def update_contact(self, input: UpdateContactInput) -> None:
        # Setting fields is idempotent, so a retry needs no key of its own.
        if not await set_fields(self.pool, uuid.UUID(input.contact_id), input.set):
            raise ApplicationError(
                f"step '{input.step}': contact {input.contact_id} does not exist",
                non_retryable=True,
            )
