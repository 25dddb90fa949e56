"""Delivery errors: bounces, complaints and refusals reported for sent messages.

A report names its message by the product's message id, by the Message-ID header
the product gave it (`<id@host>`), or by the provider's id. Each error becomes a
message event (`kind = 'delivery_error'`) the dispatcher delivers like a click;
a hard bounce or a complaint also suppresses the recipient's address. The send path
records a relay's refusal the same way (`reject_message`).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from journeys.db import Connection, Executor
from journeys.definition.common import DeliveryErrorKind
from journeys.store.messages import WRITE_TIMEOUT

# These make the address undeliverable for good.
SUPPRESSING = ("hard_bounce", "complaint")


def text_array(values: tuple[str, ...]) -> str:
    """Constants written into a statement as a literal array of text: `ARRAY['a',
    'b']::text[]`, for `= ANY(...)` (a tuple's repr is no SQL: `('a',)`)."""
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"ARRAY[{quoted}]::text[]"


# The rest of a statement that begins `WITH <errors> AS (…)`, rows of (message_id,
# recipient, channel, kind): suppresses the e-mail address of each hard bounce or
# complaint among them, whoever reported it (a webhook, SES, the send path when the
# relay refused the recipient). The first suppression of an address is a profile
# change (`bounced`) of every contact with it, stored for the dispatcher like any
# event: their runs' exit_if checks it at once.
SUPPRESS = f"""
    , s AS (INSERT INTO suppressed_addresses (address, reason, message_id)
            SELECT lower(recipient), kind, message_id FROM {{errors}}
            WHERE kind = ANY({text_array(SUPPRESSING)})
              AND channel = 'email' AND recipient IS NOT NULL
            ON CONFLICT (address) DO NOTHING
            RETURNING address)
    INSERT INTO contact_events (contact_id, kind, name, data)
    SELECT c.id, 'profile_change', 'profile_change', jsonb_build_object(
        'fields', jsonb_build_array('bounced'),
        'values', jsonb_build_object('bounced', true), 'created', false)
    FROM contacts c JOIN s ON lower(c.email) = s.address"""

_HEADER = re.compile(r"^<?([^<>@\s]+)@[^<>@\s]+>?$")


def _candidate_id(reference: str) -> uuid.UUID | None:
    """The product's message id inside `reference` (the id itself, or a Message-ID)."""
    text = reference.strip()
    found = _HEADER.match(text)
    if found:
        text = found.group(1)
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def record_delivery_error(
    pool: asyncpg.Pool,
    reference: str,
    kind: DeliveryErrorKind,
    detail: str | None,
    source: str,
) -> uuid.UUID | None:
    """Record the error against its message; the message's id, or None for an orphan
    (then kept in `orphan_delivery_reports`)."""
    async with pool.acquire() as conn, conn.transaction():
        return await record_delivery_error_in(conn, reference, kind, detail, source)


async def record_delivery_error_in(
    conn: Connection,
    reference: str,
    kind: DeliveryErrorKind,
    detail: str | None,
    source: str,
) -> uuid.UUID | None:
    """`record_delivery_error` inside the caller's transaction on `conn` (a bounce notice
    is stored in the same transaction as the error it records)."""
    message = await conn.fetchrow(
        """SELECT id, recipient, channel FROM messages
           WHERE id = $1 OR provider_id = $2 OR provider_id = $3 LIMIT 1""",
        _candidate_id(reference),
        reference,
        f"<{reference.strip('<>')}>",
    )
    if message is None:
        await conn.execute(
            """INSERT INTO orphan_delivery_reports (reference, kind, detail, source)
               VALUES ($1, $2, $3, $4)""",
            reference,
            kind,
            detail,
            source,
        )
        return None
    await insert_delivery_error(conn, message["id"], kind, detail, source)
    if kind in SUPPRESSING:
        await conn.execute(
            f"""WITH e AS (SELECT $1::uuid AS message_id, $2::text AS recipient,
                                  $3::text AS channel, $4::text AS kind)
                {SUPPRESS.format(errors="e")}""",
            message["id"],
            message["recipient"],
            message["channel"],
            kind,
        )
    message_id: uuid.UUID = message["id"]
    return message_id


def _error_data(kind: str, detail: str | None, source: str) -> dict[str, Any]:
    """A delivery error event's `data`, as the dispatcher reads it."""
    return {"kind": kind, "detail": detail, "source": source}


async def insert_delivery_error(
    db: Executor, message_id: uuid.UUID, kind: str, detail: str | None, source: str
) -> None:
    await db.execute(
        """INSERT INTO message_events (message_id, kind, data)
           VALUES ($1, 'delivery_error', $2)""",
        message_id,
        _error_data(kind, detail, source),
    )


async def reject_message(
    pool: asyncpg.Pool,
    message_id: uuid.UUID,
    refusal: str,
    kind: DeliveryErrorKind = "rejected",
) -> None:
    """The provider refused the message for good (an SMTP 5xx): the row says so, and the
    delivery error `kind` is recorded once, whatever the retries of this write. A
    refusal of the recipient's address is a hard bounce: the address is suppressed, as
    a hard-bounce report would (`SUPPRESS`), in the same statement."""
    await pool.execute(
        f"""WITH m AS (UPDATE messages SET status = 'rejected', error = $2,
                                           lease_owner = NULL, lease_until = NULL
                       WHERE id = $1 AND status <> 'rejected'
                       RETURNING id AS message_id, recipient, channel, $4::text AS kind),
                 d AS (INSERT INTO message_events (message_id, kind, data)
                       SELECT message_id, 'delivery_error', $3 FROM m)
            {SUPPRESS.format(errors="m")}""",
        message_id,
        refusal,
        _error_data(kind, refusal, "send"),
        kind,
        timeout=WRITE_TIMEOUT,
    )
