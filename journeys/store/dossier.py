"""The dossier: one list, newest first, of what the product did to or for a contact."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
from pydantic import BaseModel, Field


class DossierEntry(BaseModel):
    id: str = Field(description="the entry's source and row, such as `message:<uuid>`")
    kind: str = Field(
        description="message, activity, request, sale, script, campaign_record, "
        "selection_added, "
        "project_removed, journey_entered, journey_refused, journey_removed, "
        "journey_terminated, profile_updated, …"
    )
    at: datetime
    title: str | None = None
    subject: str | None = Field(default=None, description="messages: the subject")
    journey: str | None = None
    step: str | None = None
    status: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


# `message:<uuid>`, `journal:<number>`, …: what the query's id column holds.
_ENTRY_ID = re.compile(r"[a-z_]+:[0-9a-f-]{1,36}")


class Cursor(NamedTuple):
    """Where a page of the dossier ended: its last entry's time and id. Entries made in
    one transaction share their time, so paging by time alone would skip some."""

    at: datetime
    id: str

    def __str__(self) -> str:
        return f"{self.id}@{self.at.isoformat()}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """ValueError when `text` is not one this class wrote."""
        entry_id, _, at = text.partition("@")
        try:
            moment = in_utc(datetime.fromisoformat(at))
        except ValueError:
            moment = None
        if not _ENTRY_ID.fullmatch(entry_id) or moment is None:
            raise ValueError("not a cursor this dossier gave (its next_cursor)")
        return cls(moment, entry_id)


def next_cursor(entries: list[DossierEntry], limit: int) -> str | None:
    """The cursor of the page after `entries` when that page was full (more may follow)."""
    if not entries or len(entries) < limit:
        return None
    return str(Cursor(entries[-1].at, entries[-1].id))


def in_utc(moment: datetime) -> datetime:
    """`moment` in UTC (without a zone it is read as UTC); ValueError when UTC cannot
    hold it (the first or last day of the calendar in a far zone)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("a moment within the calendar in UTC") from None


async def dossier_of(
    pool: asyncpg.Pool,
    contact_id: uuid.UUID,
    limit: int,
    before: datetime | None = None,
    after: Cursor | None = None,
) -> list[DossierEntry]:
    """The newest `limit` entries, before the moment `before` and after the entry
    `after` (the cursor of the page before: newest first)."""
    rows = await pool.fetch(
        """
        SELECT * FROM (
            SELECT 'message:' || id AS id, 'message' AS kind, created_at AS at,
                   CASE WHEN channel = 'sms' THEN left(body, 60) END AS title,
                   subject, journey_key AS journey, step, status,
                   jsonb_strip_nulls(jsonb_build_object(
                       'channel', channel, 'error', error, 'segments', segments,
                       'sent_at', sent_at)) AS details
            FROM messages WHERE contact_id = $1
          UNION ALL
            SELECT 'crm:' || id, kind, created_at, title, NULL, journey_key, step, status,
                   jsonb_strip_nulls(details || jsonb_build_object(
                       'record_type', record_type, 'owner', owner, 'assigned_by', assigned_by,
                       'due_at', due_at, 'ends_at', ends_at))
            FROM crm_records WHERE contact_id = $1
          UNION ALL
            SELECT 'script:' || id, 'script', created_at, 'POST ' || url, NULL, journey_key,
                   step, status,
                   jsonb_strip_nulls(jsonb_build_object(
                       'attempts', attempts, 'response_status', response_status,
                       'error', error, 'finished_at', finished_at))
            FROM script_calls WHERE contact_id = $1
          UNION ALL
            SELECT 'journal:' || id, kind, at, title, NULL, journey_key, step, NULL, '{}'::jsonb
            FROM contact_journal WHERE contact_id = $1
          UNION ALL
            SELECT 'campaign_record:' || id, 'campaign_record', created_at, subject, NULL,
                   NULL, NULL, CASE WHEN done THEN 'done' ELSE 'open' END,
                   jsonb_build_object('campaign', campaign_key, 'action', action_key,
                                      'record_type', record_type, 'done', done)
            FROM campaign_records WHERE contact_id = $1
        ) entries
        WHERE ($3::timestamptz IS NULL OR at < $3)
          AND ($4::timestamptz IS NULL OR (at, id) < ($4, $5::text))
        ORDER BY at DESC, id DESC LIMIT $2
        """,
        contact_id,
        limit,
        before,
        after.at if after else None,
        after.id if after else None,
    )
    return [DossierEntry.model_validate(dict(r)) for r in rows]
