"""Selection and project memberships changed by journeys."""

from __future__ import annotations

import uuid

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.retries import quiet_outages
from journeys.models import MembershipInput
from journeys.store import groups


class GroupActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @activity.defn(name="change_membership")
    @quiet_outages
    async def change_membership(self, input: MembershipInput) -> bool:
        """True when membership changed (False: it already was as asked)."""
        try:
            return await groups.change_member(
                self.pool,
                input.kind,
                input.key,
                uuid.UUID(input.contact_id),
                add=input.add,
                journey_key=input.journey_key,
                step=input.step,
                idempotency_key=input.idempotency_key,
            )
        except (groups.UnknownGroup, groups.QuerySelection) as exc:
            raise ApplicationError(f"step '{input.step}': {exc}", non_retryable=True) from None
        except asyncpg.ForeignKeyViolationError:
            raise ApplicationError(
                f"step '{input.step}': contact {input.contact_id} does not exist",
                non_retryable=True,
            ) from None
