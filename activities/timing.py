"""Working out local moments for waits: the contact's time zone and date fields.

`zoneinfo` cannot run inside the workflow sandbox, so the workflow asks this
activity for the UTC instant and sleeps until it.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
from temporalio import activity

from activities.contacts import require_contact
from activities.retries import quiet_outages
from journeys import calendar
from journeys.contacts import profile
from journeys.models import QuietHoursInput, ResolvedWait, ResolveWaitInput


class TimingActivities:
    def __init__(self, pool: asyncpg.Pool, default_time_zone: str) -> None:
        self.pool = pool
        self.default_time_zone = default_time_zone

    @activity.defn(name="resolve_wait")
    @quiet_outages
    async def resolve_wait(self, input: ResolveWaitInput) -> ResolvedWait:
        contact = await require_contact(self.pool, input.contact_id)
        tz = ZoneInfo(contact.time_zone or self.default_time_zone)
        now = datetime.now(tz)
        at = calendar.parse_local_time(input.at) if input.at else None
        if input.until_field is None:
            assert at is not None  # the definition allows no other wait here
            weekdays = (
                frozenset(calendar.WEEKDAYS[d] for d in input.weekdays) if input.weekdays else None
            )
            return ResolvedWait(until=calendar.next_local_time(now, tz, at, weekdays))
        value = profile(contact).get(input.until_field)
        if value in (None, ""):
            return ResolvedWait(reason=f"field '{input.until_field}' is empty")
        try:
            moment = calendar.instant_of_field(value, tz)
            if input.anniversary:
                return ResolvedWait(
                    until=calendar.next_anniversary(
                        now, tz, moment.astimezone(tz).date(), input.offset, at
                    )
                )
            if at is not None:
                local_day = moment.astimezone(tz).date()
                moment = calendar.instant_of_field(datetime.combine(local_day, at), tz)
            if input.offset is not None:
                moment = calendar.add_calendar(moment, input.offset, tz)
        except ValueError as exc:
            return ResolvedWait(reason=f"field '{input.until_field}': {exc}")
        return ResolvedWait(until=moment)

    @activity.defn(name="end_of_quiet_hours")
    @quiet_outages
    async def end_of_quiet_hours(self, input: QuietHoursInput) -> ResolvedWait:
        """When the quiet hours the contact is in now end (their time zone, or the
        default); `until` None when they are not in them."""
        contact = await require_contact(self.pool, input.contact_id)
        tz = ZoneInfo(contact.time_zone or self.default_time_zone)
        return ResolvedWait(
            until=calendar.end_of_quiet_hours(
                datetime.now(tz),
                tz,
                calendar.parse_local_time(input.start),
                calendar.parse_local_time(input.end),
            )
        )
