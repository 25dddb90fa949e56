"""Records for colleagues: activities (with agenda booking), requests, sales."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contacts import require_contact
from activities.retries import quiet_outages
from journeys import calendar
from journeys.contacts import Contact, profile
from journeys.db import Connection
from journeys.definition import parse_duration
from journeys.models import CreatedRecord, CreateRecordInput
from journeys.store import crm
from journeys.templates import RenderError, render


class CrmActivities:
    def __init__(self, pool: asyncpg.Pool, default_time_zone: str) -> None:
        self.pool = pool
        self.default_time_zone = default_time_zone

    @activity.defn(name="create_record")
    @quiet_outages
    async def create_record(self, input: CreateRecordInput) -> CreatedRecord:
        contact = await require_contact(self.pool, input.contact_id)
        fields = profile(contact)
        try:
            title = render(input.title, fields)
            details = {
                k: render(v, fields) if k == "message" and isinstance(v, str) else v
                for k, v in input.details.items()
            }
        except RenderError as exc:
            raise ApplicationError(
                f"step '{input.step}': template failed: {exc}", non_retryable=True
            ) from None
        record = crm.NewRecord(
            idempotency_key=input.idempotency_key,
            kind=input.kind,
            contact_id=contact.id,
            title=title,
            record_type=input.record_type,
            status=input.status,
            details=details,
            journey_key=input.journey_key,
            step=input.step,
        )

        async def assign(conn: Connection) -> crm.Assignment:
            return await self._assign(conn, input, contact)

        row = await crm.create_record(self.pool, record, assign)
        return CreatedRecord(
            id=str(row["id"]),
            owner=row["owner"],
            assigned_by=row["assigned_by"],
            due_at=row["due_at"],
        )

    async def _assign(
        self, conn: Connection, input: CreateRecordInput, contact: Contact
    ) -> crm.Assignment:
        kind = input.owner["kind"]
        owner: str | None
        if kind == "user":
            owner, how = input.owner["user"], "named in the journey"
        elif kind == "contact_owner":
            owner, how = contact.owner, "the contact's owner"
        elif kind == "service_owner":
            owner, how = contact.service_owner, "the contact's service owner"
        elif kind == "auto":
            assert input.category is not None  # the definition check guarantees it
            owner = await crm.next_in_rotation(conn, input.category)
            how = f"round robin of category '{input.category}'"
        else:
            owner, how = None, "unassigned"
        if owner is None and kind != "unassigned":
            how = f"unassigned: no {how.removeprefix('the ')}"
        now = datetime.now(UTC)
        if input.slot is not None:
            if owner is None:
                return crm.Assignment(None, how, due_at=now)
            tz = ZoneInfo(await crm.user_time_zone(conn, owner) or self.default_time_zone)
            busy = await crm.lock_agenda(conn, owner)
            length = parse_duration(input.slot)
            try:
                start = calendar.first_free_slot(now, tz, length, busy)
            except ValueError as exc:
                raise ApplicationError(
                    f"step '{input.step}': no free slot for {owner}: {exc}", non_retryable=True
                ) from None
            return crm.Assignment(owner, how, due_at=start, ends_at=start + length)
        due = None
        if input.due_in is not None:
            tz = ZoneInfo(contact.time_zone or self.default_time_zone)
            due = calendar.add_calendar(now, input.due_in, tz)
        return crm.Assignment(owner, how, due_at=due)
