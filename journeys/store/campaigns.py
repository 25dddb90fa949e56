"""Campaigns, their actions, unlinked contacts, records, costs and results (all SQL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from journeys.db import Executor
from journeys.store.groups import decode_cursor, encode_cursor
from journeys.store.queries import SelectionSql


@dataclass(frozen=True)
class Campaign:
    key: str
    name: str
    fixed_cost: Decimal
    currency: str
    created_at: datetime


@dataclass(frozen=True)
class Action:
    campaign_key: str
    key: str
    selection_key: str
    record_type: str
    subject: str
    per_destination: bool
    done: bool
    cost_per_contact: Decimal
    mail_journey: str | None
    journey_key: str | None
    operation_id: uuid.UUID | None
    contacts: int | None
    generated_at: datetime | None
    created_at: datetime


class AlreadyGenerated(Exception):
    """An action's target set is fixed once its generation was asked for."""


async def upsert_campaign(
    pool: asyncpg.Pool, key: str, name: str, fixed_cost: Decimal, currency: str
) -> tuple[Campaign, bool]:
    row = await pool.fetchrow(
        """INSERT INTO campaigns (key, name, fixed_cost, currency) VALUES ($1, $2, $3, $4)
           ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name,
               fixed_cost = EXCLUDED.fixed_cost, currency = EXCLUDED.currency
           RETURNING key, name, fixed_cost, currency, created_at, (xmax = 0) AS created""",
        key,
        name,
        fixed_cost,
        currency,
    )
    assert row is not None
    created = bool(row["created"])
    return Campaign(**{k: row[k] for k in Campaign.__dataclass_fields__}), created


async def get_campaign(pool: asyncpg.Pool, key: str) -> Campaign | None:
    row = await pool.fetchrow(
        "SELECT key, name, fixed_cost, currency, created_at FROM campaigns WHERE key = $1", key
    )
    return Campaign(**dict(row)) if row else None


async def list_campaigns(pool: asyncpg.Pool, limit: int, offset: int = 0) -> list[Campaign]:
    """Campaigns, the newest first, a page at a time."""
    rows = await pool.fetch(
        """SELECT key, name, fixed_cost, currency, created_at FROM campaigns
           ORDER BY created_at DESC, key LIMIT $1 OFFSET $2""",
        limit,
        offset,
    )
    return [Campaign(**dict(r)) for r in rows]


async def upsert_action(
    pool: asyncpg.Pool,
    campaign_key: str,
    key: str,
    fields: dict[str, Any],
) -> tuple[Action, bool]:
    """Create the action, or change it while it has not been generated."""
    columns = list(fields)
    async with pool.acquire() as conn, conn.transaction():
        await _lock_ungenerated(conn, campaign_key, key, "it cannot change any more")
        # Column names come from the caller's fixed list, never from input.
        row = await conn.fetchrow(
            f"""INSERT INTO campaign_actions (campaign_key, key, {", ".join(columns)})
                VALUES ($1, $2, {", ".join(f"${i + 3}" for i in range(len(columns)))})
                ON CONFLICT (campaign_key, key) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)}
                RETURNING *, (xmax = 0) AS created""",
            campaign_key,
            key,
            *fields.values(),
        )
    assert row is not None
    return _action(row), bool(row["created"])


async def _lock_ungenerated(conn: Executor, campaign_key: str, key: str, why: str) -> None:
    """Lock the action's row (if there is one) for the transaction; `AlreadyGenerated`
    when its generation was asked for and did not fail."""
    row = await conn.fetchrow(
        """SELECT a.operation_id, o.status FROM campaign_actions a
           LEFT JOIN operations o ON o.id = a.operation_id
           WHERE a.campaign_key = $1 AND a.key = $2 FOR UPDATE OF a""",
        campaign_key,
        key,
    )
    # A generation that failed (its selection no longer compiled, say) fixes nothing.
    if row is not None and row["operation_id"] is not None and row["status"] != "failed":
        raise AlreadyGenerated(f"action '{key}' was generated; {why}")


def _action(row: asyncpg.Record) -> Action:
    return Action(**{k: row[k] for k in Action.__dataclass_fields__})


async def get_action(pool: asyncpg.Pool, campaign_key: str, key: str) -> Action | None:
    row = await pool.fetchrow(
        "SELECT * FROM campaign_actions WHERE campaign_key = $1 AND key = $2", campaign_key, key
    )
    return _action(row) if row else None


async def actions_of(pool: asyncpg.Pool, campaign_key: str) -> list[Action]:
    rows = await pool.fetch(
        "SELECT * FROM campaign_actions WHERE campaign_key = $1 ORDER BY created_at, key",
        campaign_key,
    )
    return [_action(r) for r in rows]


async def set_link(
    pool: asyncpg.Pool, campaign_key: str, action_key: str, contact_id: uuid.UUID, linked: bool
) -> None:
    """Include or exclude one contact of the action's selection, before generating."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_ungenerated(conn, campaign_key, action_key, "its contacts are fixed")
        if linked:
            await conn.execute(
                """DELETE FROM campaign_unlinked
                   WHERE campaign_key = $1 AND action_key = $2 AND contact_id = $3""",
                campaign_key,
                action_key,
                contact_id,
            )
        else:
            await conn.execute(
                """INSERT INTO campaign_unlinked (campaign_key, action_key, contact_id)
                   VALUES ($1, $2, $3) ON CONFLICT DO NOTHING""",
                campaign_key,
                action_key,
                contact_id,
            )


def unlinked_sql(campaign_key: str, action_key: str, first_param: int) -> tuple[str, list[Any]]:
    """A condition over `c` that holds for the action's unlinked contacts."""
    return (
        f"""EXISTS (SELECT 1 FROM campaign_unlinked u
            WHERE u.campaign_key = ${first_param}::text AND u.action_key = ${first_param + 1}::text
              AND u.contact_id = c.id)""",
        [campaign_key, action_key],
    )


@dataclass(frozen=True)
class LinkPage:
    contacts: list[tuple[uuid.UUID, bool]]
    count: int
    unlinked: int
    next_cursor: str | None


async def link_page(
    pool: asyncpg.Pool,
    campaign_key: str,
    action_key: str,
    members: SelectionSql,
    cursor: str | None,
    limit: int,
) -> LinkPage:
    """The selection's members now, in contact-id order, each with whether it is linked."""
    n = len(members.args)
    unlinked, args = unlinked_sql(campaign_key, action_key, n + 1)
    after = decode_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        f"""SELECT c.id, NOT {unlinked} AS linked FROM contacts c
            WHERE ({members.where}) AND (${n + 3}::uuid IS NULL OR c.id > ${n + 3}::uuid)
            ORDER BY c.id LIMIT ${n + 4}""",
        *members.args,
        *args,
        after,
        limit + 1,
    )
    counts = await pool.fetchrow(
        f"""SELECT count(*) AS count, count(*) FILTER (WHERE {unlinked}) AS unlinked
            FROM contacts c WHERE {members.where}""",
        *members.args,
        *args,
    )
    assert counts is not None
    page = [(r["id"], bool(r["linked"])) for r in rows[:limit]]
    more = len(rows) > limit
    return LinkPage(
        page,
        int(counts["count"]),
        int(counts["unlinked"]),
        encode_cursor(page[-1][0]) if more and page else None,
    )


async def is_member(pool: asyncpg.Pool, members: SelectionSql, contact_id: uuid.UUID) -> bool:
    n = len(members.args)
    return bool(
        await pool.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM contacts c WHERE c.id = ${n + 1}::uuid AND "
            f"{members.where})",
            *members.args,
            contact_id,
        )
    )


async def mark_generating(
    pool: asyncpg.Pool,
    campaign_key: str,
    action_key: str,
    operation_id: uuid.UUID,
    replacing: uuid.UUID | None,
) -> None:
    """The action's generation is `operation_id` (instead of `replacing`, one that failed)."""
    await pool.execute(
        """UPDATE campaign_actions SET operation_id = $3
           WHERE campaign_key = $1 AND key = $2 AND operation_id IS NOT DISTINCT FROM $4""",
        campaign_key,
        action_key,
        operation_id,
        replacing,
    )


async def write_records(
    pool: asyncpg.Pool, action: Action, contact_ids: list[uuid.UUID | None]
) -> int:
    """The action's records for these contacts (None: the one record for the whole
    action), once each; how many are new."""
    rows = await pool.fetch(
        """INSERT INTO campaign_records (id, campaign_key, action_key, contact_id, record_type,
                                         subject, done)
           SELECT gen_random_uuid(), $1, $2, c, $3, $4, $5 FROM unnest($6::uuid[]) AS c
           ON CONFLICT DO NOTHING RETURNING id""",
        action.campaign_key,
        action.key,
        action.record_type,
        action.subject,
        action.done,
        contact_ids,
    )
    return len(rows)


async def mark_generated(
    pool: asyncpg.Pool, campaign_key: str, action_key: str, contacts: int
) -> None:
    await pool.execute(
        """UPDATE campaign_actions SET contacts = $3, generated_at = now()
           WHERE campaign_key = $1 AND key = $2""",
        campaign_key,
        action_key,
        contacts,
    )


async def add_cost(
    pool: asyncpg.Pool, campaign_key: str, description: str, amount: Decimal
) -> asyncpg.Record:
    row = await pool.fetchrow(
        """INSERT INTO campaign_costs (campaign_key, description, amount) VALUES ($1, $2, $3)
           RETURNING id, description, amount, at""",
        campaign_key,
        description,
        amount,
    )
    assert row is not None
    return row


async def costs_of(pool: asyncpg.Pool, campaign_key: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT id, description, amount, at FROM campaign_costs WHERE campaign_key = $1 "
            "ORDER BY at, id",
            campaign_key,
        )
    )


async def results_of(pool: asyncpg.Pool, mail_journey: str) -> dict[str, int]:
    """What became of an action's mail: sent, opened, clicked, bounced (messages)."""
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE m.status = 'sent') AS sent,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM message_events e
                      WHERE e.message_id = m.id AND e.kind = 'opened')) AS opened,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM message_events e
                      WHERE e.message_id = m.id AND e.kind = 'clicked')) AS clicked,
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM message_events e
                      WHERE e.message_id = m.id AND e.kind = 'delivery_error')) AS bounced
           FROM messages m WHERE m.journey_key = $1""",
        mail_journey,
    )
    assert row is not None
    return {k: int(row[k]) for k in ("sent", "opened", "clicked", "bounced")}
