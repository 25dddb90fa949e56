"""Bounce notices (`bounce_notices`): each mail the bounce address received, what became
of it, and the raw mail of those kept for inspection.

A notice and the delivery error it records are written in one transaction, and a
notice is taken once: a relay that delivers it again (its LMTP reply was lost) or a
mailbox polled again finds its digest and records nothing more.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from typing import Literal

import asyncpg

from journeys.definition.common import DeliveryErrorKind
from journeys.store.delivery import record_delivery_error_in

Outcome = Literal["recorded", "ignored", "orphan", "kept"]
Via = Literal["smtp", "lmtp", "imap"]

# The raw mail kept of a notice kept for inspection (a DSN that returns a whole mail
# with its attachments can be large; the reports themselves are a few kB).
MAX_RAW = 1024 * 1024
# Notices are deleted this long after they came (a few at a time, as new ones arrive).
KEEP_DAYS = 30


@dataclass(frozen=True)
class Judged:
    """What a notice is, before it is stored (journeys.bounces.judge)."""

    outcome: Outcome  # recorded here means "to record": it may turn out an orphan
    reason: str | None = None
    message_id: uuid.UUID | None = None
    report: str | None = None  # dsn | arf
    kind: DeliveryErrorKind | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Taken:
    id: int | None  # None: the same mail was taken before, nothing was done now
    outcome: Outcome | Literal["duplicate"]
    reason: str | None
    message_id: uuid.UUID | None


def digest_of(raw: bytes) -> bytes:
    """What recognises a mail taken before (its SHA-256)."""
    return hashlib.sha256(raw).digest()


async def take_notice(
    pool: asyncpg.Pool,
    raw: bytes,
    envelope_to: list[str],
    via: Via,
    judged: Judged,
    digest: bytes | None = None,
) -> Taken:
    """Store the notice and, when it is genuine and reports an error, record that error
    against its message through the outbox (as a delivery webhook would). `digest`:
    `digest_of(raw)`, when the caller has it already."""
    digest = digest if digest is not None else digest_of(raw)
    async with pool.acquire() as conn, conn.transaction():
        notice_id = await conn.fetchval(
            """INSERT INTO bounce_notices (via, envelope_to, digest, outcome, reason,
                   message_id, report, kind, detail, size, raw)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (digest) DO NOTHING RETURNING id""",
            via,
            envelope_to,
            digest,
            judged.outcome,
            judged.reason,
            judged.message_id,
            judged.report,
            judged.kind,
            judged.detail,
            len(raw),
            raw[:MAX_RAW] if judged.outcome == "kept" else None,
        )
        if notice_id is None:
            return Taken(None, "duplicate", None, judged.message_id)
        outcome: Outcome = judged.outcome
        if outcome == "recorded":
            assert judged.message_id is not None and judged.kind is not None
            found = await record_delivery_error_in(
                conn, str(judged.message_id), judged.kind, judged.detail, source=judged.report or ""
            )
            if found is None:
                outcome = "orphan"
                await conn.execute(
                    "UPDATE bounce_notices SET outcome = 'orphan' WHERE id = $1", notice_id
                )
        # Retention: the oldest few past their time go as new ones come.
        await conn.execute(
            """DELETE FROM bounce_notices WHERE id IN (
                   SELECT id FROM bounce_notices
                   WHERE received_at < now() - make_interval(days => $1)
                   ORDER BY received_at LIMIT 100)""",
            KEEP_DAYS,
        )
        return Taken(int(notice_id), outcome, judged.reason, judged.message_id)


@dataclass(frozen=True)
class KeptNotice:
    id: int
    received_at: datetime
    via: str
    envelope_to: list[str]
    reason: str
    message_id: uuid.UUID | None
    subject: str | None
    size: int


async def list_kept(
    pool: asyncpg.Pool, *, limit: int = 100, before: int | None = None
) -> list[KeptNotice]:
    """Kept notices, newest first (`before`: ids below this one, for the next page)."""
    rows = await pool.fetch(
        """SELECT id, received_at, via, envelope_to, reason, message_id, size,
                  substring(raw for 16384) AS head
           FROM bounce_notices
           WHERE outcome = 'kept' AND ($2::bigint IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $1""",
        limit,
        before,
    )
    return [
        KeptNotice(
            id=r["id"],
            received_at=r["received_at"],
            via=r["via"],
            envelope_to=list(r["envelope_to"]),
            reason=r["reason"] or "",
            message_id=r["message_id"],
            subject=_subject(r["head"] or b""),
            size=r["size"],
        )
        for r in rows
    ]


async def read_kept(pool: asyncpg.Pool, notice_id: int) -> bytes | None:
    """The raw mail of a kept notice (its first MB), or None."""
    raw = await pool.fetchval(
        "SELECT raw FROM bounce_notices WHERE id = $1 AND outcome = 'kept'", notice_id
    )
    return bytes(raw) if raw is not None else None


def _subject(head: bytes) -> str | None:
    """The Subject of a mail from its first bytes, decoded (RFC 2047), on one line."""
    end = head.find(b"\r\n\r\n")
    parsed = message_from_bytes(head[: end + 4] if end >= 0 else head, policy=policy.default)
    try:
        subject = parsed.get("Subject")
    except Exception:  # a header the parser cannot make sense of
        return None
    return " ".join(str(subject).split())[:200] if subject is not None else None
