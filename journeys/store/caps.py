"""Frequency caps (G2): at most so many messages of a channel to a contact within a
period, across journeys. The send path asks `held_until` under a lock per contact and
channel, between looking for the send's row and writing it (`activities/sends.py`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from journeys.db import Connection, Executor
from journeys.definition.common import parse_duration

CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class FrequencyCap:
    channel: str
    max_messages: int
    per: str  # ISO 8601 duration

    @property
    def period(self) -> timedelta:
        return parse_duration(self.per)


async def list_caps(db: Executor) -> list[FrequencyCap]:
    rows = await db.fetch("SELECT channel, max_messages, per FROM frequency_caps ORDER BY channel")
    return [FrequencyCap(**dict(r)) for r in rows]


async def set_cap(db: Executor, cap: FrequencyCap) -> None:
    await db.execute(
        """INSERT INTO frequency_caps (channel, max_messages, per) VALUES ($1, $2, $3)
           ON CONFLICT (channel) DO UPDATE SET max_messages = $2, per = $3, updated_at = now()""",
        cap.channel,
        cap.max_messages,
        cap.per,
    )


async def delete_cap(db: Executor, channel: str) -> bool:
    return (await db.execute("DELETE FROM frequency_caps WHERE channel = $1", channel)) != (
        "DELETE 0"
    )


async def lock_contact(conn: Connection, cap: FrequencyCap, contact_id: uuid.UUID) -> None:
    """Until the transaction ends, no other capped send to the contact on the channel
    counts or writes: two journeys' mails at the same moment cannot both take the last
    place."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"frequency-cap/{cap.channel}/{contact_id}",
    )


async def held_until(conn: Connection, cap: FrequencyCap, contact_id: uuid.UUID) -> datetime | None:
    """When the contact may get the next message of the channel: None when now, else
    when the oldest of the cap's last `max_messages` leaves the period. Sent messages
    and those being sent count; transactional ones, skipped and refused ones do not."""
    rows = await conn.fetch(
        """SELECT created_at FROM messages
           WHERE contact_id = $1 AND channel = $2 AND NOT transactional
             AND status IN ('sent', 'sending') AND created_at > now() - $3::interval
           ORDER BY created_at DESC LIMIT $4""",
        contact_id,
        cap.channel,
        cap.period,
        cap.max_messages,
    )
    if len(rows) < cap.max_messages:
        return None
    oldest: datetime = rows[-1]["created_at"]
    return oldest + cap.period
