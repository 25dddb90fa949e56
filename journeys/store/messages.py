"""Messages sent to contacts and what happened to them (opens, clicks, unsubscribes)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from pydantic import BaseModel, Field

from journeys.db import Executor, planned_for_call


class MessageEventView(BaseModel):
    kind: str = Field(description="opened, clicked or unsubscribed")
    url: str | None = None
    at: datetime


class MessageView(BaseModel):
    id: uuid.UUID
    step: str
    status: str = Field(description="sending, sent, skipped, rejected or failed")
    subject: str | None
    error: str | None = Field(description="why it was skipped, rejected or failed")
    created_at: datetime
    sent_at: datetime | None
    events: list[MessageEventView]


async def messages_of(pool: asyncpg.Pool, workflow_id: str) -> list[MessageView]:
    """The messages a participant's run sent, each with its opens and clicks."""
    rows = await pool.fetch(
        """
        SELECT m.id, m.step, m.status, m.subject, m.error, m.created_at, m.sent_at,
               COALESCE(json_agg(json_build_object('kind', e.kind, 'url', e.url, 'at', e.at)
                                 ORDER BY e.at) FILTER (WHERE e.id IS NOT NULL), '[]')::jsonb
                   AS events
        FROM messages m LEFT JOIN message_events e ON e.message_id = m.id
        WHERE m.workflow_id = $1
        GROUP BY m.id ORDER BY m.created_at
        """,
        workflow_id,
    )
    return [MessageView.model_validate(dict(r)) for r in rows]


async def record_message_event(
    pool: asyncpg.Pool,
    message_id: uuid.UUID,
    kind: str,
    url: str | None,
    *,
    at: datetime,
    hit_id: uuid.UUID,
) -> bool:
    """Store an open or a click for the dispatcher, once per `hit_id`; False when there
    is no such message."""
    found = await pool.fetchval(
        """WITH m AS (SELECT id FROM messages WHERE id = $1),
                e AS (INSERT INTO message_events (message_id, kind, url, at, hit_id)
                      SELECT id, $2, $3, $4, $5 FROM m ON CONFLICT (hit_id) DO NOTHING)
           SELECT true FROM m""",
        message_id,
        kind,
        url,
        at,
        hit_id,
    )
    return bool(found)


# A profile change of `unsubscribed` (and `unsubscribed_at`) for each contact in the
# statement's `{contacts}` (id, unsubscribed_at), as `outbox.queue_profile_change` writes one.
UNSUBSCRIBED_CHANGE = """
    INSERT INTO contact_events (contact_id, kind, name, data)
    SELECT id, 'profile_change', 'profile_change', jsonb_build_object(
        'fields', jsonb_build_array('unsubscribed', 'unsubscribed_at'),
        'values', jsonb_build_object('unsubscribed', true, 'unsubscribed_at', unsubscribed_at),
        'created', false)
    FROM {contacts}"""


async def record_unsubscribe(pool: asyncpg.Pool, message_id: uuid.UUID) -> bool:
    """Unsubscribe the message's contact; False when there is no such message.

    Idempotent: a second one-click POST (mail clients retry) records nothing new. The
    first is also a profile change for the dispatcher (`unsubscribed`): every run of the
    contact's with an `exit_if` checks it at once, and journeys entered on a change of
    `unsubscribed` enter.
    """
    contact_id = await pool.fetchval(
        f"""
        WITH m AS (SELECT id, contact_id FROM messages WHERE id = $1),
             e AS (INSERT INTO message_events (message_id, kind)
                   SELECT id, 'unsubscribed' FROM m
                   ON CONFLICT (message_id) WHERE kind = 'unsubscribed' DO NOTHING),
             c AS (UPDATE contacts SET unsubscribed_at = now(), updated_at = now()
                   WHERE id = (SELECT contact_id FROM m) AND unsubscribed_at IS NULL
                   RETURNING id, unsubscribed_at),
             p AS ({UNSUBSCRIBED_CHANGE.format(contacts="c")})
        SELECT contact_id FROM m
        """,
        message_id,
    )
    return contact_id is not None


# --- the send path (activities/sends.py): claim, lease, finish ---------------------------

# Writes that record an outcome; a hung connection must not outlast the attempt.
WRITE_TIMEOUT = 10.0


class Claim(NamedTuple):
    """One send to claim: the row written under its idempotency key when it is new."""

    idempotency_key: str
    channel: str
    workflow_id: str
    journey_key: str
    version: int
    step: str
    contact_id: uuid.UUID
    recipient: str | None
    skip: str | None
    follow_up_path: list[str] | None = None
    record_id: uuid.UUID | None = None
    recurring_key: str | None = None
    transactional: bool = False
    # The workflow run claiming: a message another run failed is claimed again.
    run_id: str | None = None


async def message_exists(db: Executor, idempotency_key: str) -> bool:
    """Whether a send under this key was claimed before (a retry's)."""
    found = await db.fetchval(
        "SELECT true FROM messages WHERE idempotency_key = $1", idempotency_key
    )
    return bool(found)


async def claim_messages(
    pool: Executor, claims: list[Claim], *, lease_owner: uuid.UUID, lease: timedelta
) -> list[asyncpg.Record]:
    """Insert each send's row under its idempotency key, or find the row already there;
    the rows in the order of `claims`, in one statement.

    A new row is `skipped` (with the reason) or `sending` under `lease_owner`'s lease,
    from the moment of the write (not the transaction's start: a capped send may wait
    for its contact's lock first); `claimed` says whether this call wrote it.
    """
    # A key twice in one statement cannot be inserted and updated both: claimed once.
    unique = list({c.idempotency_key: c for c in claims}.values())
    rows = await pool.fetch(
        """
        INSERT INTO messages (id, idempotency_key, channel, workflow_id, journey_key,
                              journey_version, step, contact_id, recipient, status, error,
                              lease_owner, lease_until, follow_up_path, record_id,
                              recurring_key, transactional)
        SELECT gen_random_uuid(), c.idempotency_key, c.channel, c.workflow_id, c.journey_key,
               c.version, c.step, c.contact_id, c.recipient,
               CASE WHEN c.skip IS NULL THEN 'sending' ELSE 'skipped' END, c.skip, $2,
               CASE WHEN c.skip IS NULL THEN clock_timestamp() + $3::interval END,
               c.follow_up_path,
               c.record_id, c.recurring_key, c.transactional
        FROM jsonb_to_recordset($1::jsonb) AS c(
            idempotency_key text, channel text, workflow_id text, journey_key text,
            version int, step text, contact_id uuid, recipient text, skip text,
            follow_up_path text[], record_id uuid, recurring_key text, transactional boolean)
        ON CONFLICT (idempotency_key) DO UPDATE SET status = messages.status
        RETURNING id, idempotency_key, status, error, lease_owner, lease_until,
                  (xmax = 0) AS claimed, lease_until - clock_timestamp() AS lease_left
        """,
        [
            {
                **c._asdict(),
                "contact_id": str(c.contact_id),
                "record_id": str(c.record_id) if c.record_id else None,
                "run_id": None,  # only a failed message's claim asks (below)
            }
            for c in unique
        ],
        lease_owner,
        lease,
    )
    by_key = {r["idempotency_key"]: r for r in rows}
    again = [
        c
        for c in unique
        if c.run_id is not None and by_key[c.idempotency_key]["status"] == "failed"
    ]
    if again:
        by_key.update(await _claim_failed_again(pool, again, lease_owner, lease))
    return [by_key[c.idempotency_key] for c in claims]


async def _claim_failed_again(
    pool: Executor, claims: list[Claim], lease_owner: uuid.UUID, lease: timedelta
) -> dict[str, asyncpg.Record]:
    """Claim failed messages again for runs other than the one that failed them (a
    reset's new run: the step runs again on the fixed data or code), as a new claim
    would (`sending` under the lease, or `skipped`). A sent message is never claimed
    again; the failing run's own retry finds the message failed."""
    rows = await pool.fetch(
        """
        UPDATE messages m
        SET status = CASE WHEN c.skip IS NULL THEN 'sending' ELSE 'skipped' END,
            error = c.skip, recipient = c.recipient, lease_owner = $2,
            lease_until = CASE WHEN c.skip IS NULL THEN clock_timestamp() + $3::interval END,
            failed_run_id = NULL
        FROM jsonb_to_recordset($1::jsonb)
             AS c(idempotency_key text, recipient text, skip text, run_id text)
        WHERE m.idempotency_key = c.idempotency_key AND m.status = 'failed'
          AND m.failed_run_id IS DISTINCT FROM c.run_id
        RETURNING m.id, m.idempotency_key, m.status, m.error, m.lease_owner, m.lease_until,
                  true AS claimed, m.lease_until - clock_timestamp() AS lease_left
        """,
        [
            {
                "idempotency_key": c.idempotency_key,
                "recipient": c.recipient,
                "skip": c.skip,
                "run_id": c.run_id,
            }
            for c in claims
        ],
        lease_owner,
        lease,
    )
    found = {r["idempotency_key"]: r for r in rows}
    if missed := [c.idempotency_key for c in claims if c.idempotency_key not in found]:
        # Failed by this run, or claimed again by a concurrent attempt meanwhile.
        for row in await pool.fetch(
            """SELECT id, idempotency_key, status, error, lease_owner, lease_until,
                      false AS claimed, lease_until - clock_timestamp() AS lease_left
               FROM messages WHERE idempotency_key = ANY($1::text[])""",
            missed,
        ):
            found[row["idempotency_key"]] = row
    return found


async def take_over_lease(
    pool: asyncpg.Pool,
    message_id: uuid.UUID,
    holder: uuid.UUID | None,
    owner: uuid.UUID,
    lease: timedelta,
) -> bool:
    """Move a `sending` row's lease from `holder` (whose lease ran out) to `owner`."""
    return bool(
        await pool.fetchval(
            """UPDATE messages SET lease_owner = $3, lease_until = now() + $4
               WHERE id = $1 AND status = 'sending' AND lease_owner IS NOT DISTINCT FROM $2
               RETURNING true""",
            message_id,
            holder,
            owner,
            lease,
        )
    )


async def take_over_leases(
    pool: asyncpg.Pool,
    rows: list[tuple[uuid.UUID, uuid.UUID | None]],
    owner: uuid.UUID,
    lease: timedelta,
) -> set[uuid.UUID]:
    """`take_over_lease` for many rows in one statement: each (id, holder) whose row is
    still `sending` under `holder` with no live lease (run out, or released) moves to
    `owner`; the ids taken."""
    if not rows:
        return set()
    async with planned_for_call(pool) as conn:
        taken = await conn.fetch(
            """UPDATE messages m SET lease_owner = $3, lease_until = clock_timestamp() + $4
               FROM unnest($1::uuid[], $2::uuid[]) AS t(id, holder)
               WHERE m.id = ANY($1::uuid[]) AND m.id = t.id AND m.status = 'sending'
                 AND m.lease_owner IS NOT DISTINCT FROM t.holder
                 AND (m.lease_until IS NULL OR m.lease_until <= clock_timestamp())
               RETURNING m.id""",
            [row_id for row_id, _ in rows],
            [holder for _, holder in rows],
            owner,
            lease,
        )
    return {r["id"] for r in taken}


async def release_leases(
    pool: asyncpg.Pool, message_ids: list[uuid.UUID], owner: uuid.UUID
) -> None:
    """`release_lease` for many rows in one statement."""
    if message_ids:
        await pool.execute(
            """UPDATE messages SET lease_owner = NULL, lease_until = NULL
               WHERE id = ANY($1::uuid[]) AND status = 'sending' AND lease_owner = $2""",
            message_ids,
            owner,
            timeout=WRITE_TIMEOUT,
        )


async def renew_leases(
    pool: asyncpg.Pool, message_ids: list[uuid.UUID], owner: uuid.UUID, lease: timedelta
) -> set[uuid.UUID]:
    """Extend `owner`'s lease on those of the rows still sending; the ids it holds."""
    rows = await pool.fetch(
        """UPDATE messages SET lease_until = now() + $3
           WHERE id = ANY($1::uuid[]) AND status = 'sending' AND lease_owner = $2
           RETURNING id""",
        message_ids,
        owner,
        lease,
    )
    return {r["id"] for r in rows}


async def release_lease(pool: asyncpg.Pool, message_id: uuid.UUID, owner: uuid.UUID) -> None:
    await pool.execute(
        """UPDATE messages SET lease_owner = NULL, lease_until = NULL
           WHERE id = $1 AND status = 'sending' AND lease_owner = $2""",
        message_id,
        owner,
        timeout=WRITE_TIMEOUT,
    )


async def finish_message(
    pool: asyncpg.Pool,
    message_id: uuid.UUID,
    status: str,
    error: str,
    *,
    run_id: str | None = None,
) -> None:
    """Record that the send ended without sending: skipped, rejected or failed (by the
    workflow run `run_id`: another run may claim it again)."""
    await pool.execute(
        """UPDATE messages SET status = $2, error = $3, lease_owner = NULL, lease_until = NULL,
                               failed_run_id = CASE WHEN $2 = 'failed' THEN $4 END
           WHERE id = $1""",
        message_id,
        status,
        error,
        run_id,
        timeout=WRITE_TIMEOUT,
    )


class Sent(NamedTuple):
    """A message the provider accepted, as it is recorded."""

    message_id: uuid.UUID
    subject: str | None
    provider_id: str | None
    body: str | None = None
    segments: int | None = None


async def mark_messages_sent(pool: asyncpg.Pool, sent: list[Sent]) -> None:
    """Record messages as sent, in one statement."""
    # A message with follow-ups also gets its `sent` event, once: a retry of this write
    # after it committed finds the row sent already.
    if len(sent) == 1:
        # The journey path's one message: plain parameters, so that the plan PostgreSQL
        # keeps for the prepared statement is the primary key's, whatever the size of
        # `messages` when it was made (a join to an unpacked list kept a whole-table
        # scan). One round trip: planning a batch for its call costs three more.
        one = sent[0]
        await pool.execute(
            """WITH m AS (UPDATE messages SET status = 'sent', subject = $2, provider_id = $3,
                                             body = $4, segments = $5, sent_at = now(),
                                             lease_owner = NULL, lease_until = NULL
                           WHERE id = $1 AND status <> 'sent'
                           RETURNING id, follow_up_path)
                INSERT INTO message_events (message_id, kind)
                SELECT id, 'sent' FROM m WHERE follow_up_path IS NOT NULL""",
            one.message_id,
            one.subject,
            one.provider_id,
            one.body,
            one.segments,
            timeout=WRITE_TIMEOUT,
        )
        return
    # A batch is planned for the call (journeys/db.py).
    async with planned_for_call(pool) as conn:
        await conn.execute(
            """WITH s AS (SELECT * FROM jsonb_to_recordset($1::jsonb)
                            AS s(message_id uuid, subject text, provider_id text, body text,
                                 segments int)),
                    m AS (UPDATE messages SET status = 'sent', subject = s.subject,
                                              provider_id = s.provider_id, body = s.body,
                                              segments = s.segments, sent_at = now(),
                                              lease_owner = NULL, lease_until = NULL
                          FROM s WHERE messages.id = ANY($2::uuid[])
                                   AND messages.id = s.message_id AND messages.status <> 'sent'
                          RETURNING messages.id, messages.follow_up_path)
               INSERT INTO message_events (message_id, kind)
               SELECT id, 'sent' FROM m WHERE follow_up_path IS NOT NULL""",
            [{**s._asdict(), "message_id": str(s.message_id)} for s in sent],
            [s.message_id for s in sent],
            timeout=WRITE_TIMEOUT,
        )


# --- the message log (the console) --------------------------------------------------------

# A delivery error was reported for the message (`message_events_delivery_errors`).
_DELIVERY_ERROR = """EXISTS (
    SELECT 1 FROM message_events b WHERE b.message_id = m.id AND b.kind = 'delivery_error')"""
# A message that bounced: a delivery error was reported for it, or the provider refused
# it. (IN: the few ids hashed once, while the newest messages are read in order.)
_BOUNCED = """(m.status = 'rejected' OR m.id IN (
    SELECT b.message_id FROM message_events b WHERE b.kind = 'delivery_error'))"""

# What the log can be filtered on: a stored status, or `bounced` (delivery errors).
LOG_STATUSES = ("sending", "sent", "skipped", "failed", "bounced")


class LoggedMessage(BaseModel):
    """A message in the log, with what it was sent for."""

    id: uuid.UUID
    created_at: datetime
    sent_at: datetime | None
    contact_id: uuid.UUID
    channel: str
    journey_key: str
    journey_name: str | None
    journey_version: int
    step: str
    recurring_key: str | None
    recurring_name: str | None
    campaign_key: str | None = Field(description="a campaign action's mail: its campaign")
    campaign_action: str | None
    subject: str | None
    body: str | None = Field(description="an SMS's text")
    status: str
    error: str | None
    delivery_error: dict[str, Any] | None = Field(
        description="the latest delivery error reported: kind, detail, source"
    )


async def message_log(
    pool: asyncpg.Pool,
    limit: int,
    *,
    status: str | None = None,
    channel: str | None = None,
    journey_key: str | None = None,
    contact_id: uuid.UUID | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[LoggedMessage]:
    """Messages newest first (by created_at, then id), at most `limit`, those older than
    `before` (the last of the previous page) when given: keyset pages over
    `messages_recent`, or `messages_contact` / `messages_journey` when filtered so.

    `status` is one of LOG_STATUSES: `bounced` is a message with a delivery error (or
    refused by the provider); `sent` is one sent without any.
    """
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if status == "bounced":
        where.append(_BOUNCED)
    elif status == "sent":
        where.append(f"m.status = 'sent' AND NOT {_DELIVERY_ERROR}")
    elif status is not None:
        where.append(f"m.status = {arg(status)}")
    if channel is not None:
        where.append(f"m.channel = {arg(channel)}")
    if journey_key is not None:
        where.append(f"m.journey_key = {arg(journey_key)}")
    if contact_id is not None:
        where.append(f"m.contact_id = {arg(contact_id)}")
    if before is not None:
        # Not a row comparison: this form lets the index on created_at alone bound it.
        at, last = arg(before[0]), arg(before[1])
        where.append(f"m.created_at <= {at} AND (m.created_at < {at} OR m.id < {last})")
    rows = await pool.fetch(
        f"""
        SELECT m.id, m.created_at, m.sent_at, m.contact_id, m.channel, m.journey_key,
               j.name AS journey_name, m.journey_version, m.step, m.recurring_key,
               r.name AS recurring_name, a.campaign_key, a.key AS campaign_action,
               m.subject, m.body, m.status, m.error, d.data AS delivery_error
        FROM (SELECT * FROM messages m {"WHERE " + " AND ".join(where) if where else ""}
              ORDER BY m.created_at DESC, m.id DESC LIMIT {arg(limit)}) m
        LEFT JOIN journeys j ON j.key = m.journey_key
        LEFT JOIN recurring_sends r ON r.key = m.recurring_key
        LEFT JOIN LATERAL (
            SELECT campaign_key, key FROM campaign_actions
            WHERE mail_journey = m.journey_key LIMIT 1) a ON true
        LEFT JOIN LATERAL (
            SELECT data FROM message_events e
            WHERE e.message_id = m.id AND e.kind = 'delivery_error'
            ORDER BY e.at DESC, e.id DESC LIMIT 1) d ON true
        ORDER BY m.created_at DESC, m.id DESC
        """,
        *args,
    )
    return [LoggedMessage.model_validate(dict(r)) for r in rows]
