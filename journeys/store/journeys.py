"""Published journeys: immutable versions of each definition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from journeys.definition import JourneyDefinition


class PublishedJourney(BaseModel):
    key: str
    name: str
    version: int
    published_at: datetime
    definition: JourneyDefinition


async def publish(pool: asyncpg.Pool, defn: JourneyDefinition) -> PublishedJourney:
    """Store `defn` as the next immutable version of its journey."""
    async with pool.acquire() as conn, conn.transaction():
        # The upsert locks the journey row, so concurrent publishes get distinct versions.
        version = await conn.fetchval(
            """
            INSERT INTO journeys (key, name, latest_version) VALUES ($1, $2, 1)
            ON CONFLICT (key) DO UPDATE SET latest_version = journeys.latest_version + 1,
                                            name = EXCLUDED.name, updated_at = now()
            RETURNING latest_version
            """,
            defn.key,
            defn.name,
        )
        published_at = await conn.fetchval(
            """INSERT INTO journey_versions (journey_key, version, definition) VALUES ($1, $2, $3)
               RETURNING published_at""",
            defn.key,
            version,
            defn.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
    return PublishedJourney(
        key=defn.key, name=defn.name, version=version, published_at=published_at, definition=defn
    )


async def get_journey(
    pool: asyncpg.Pool, key: str, version: int | None = None
) -> PublishedJourney | None:
    """A published version of a journey; the latest when `version` is None."""
    row = await pool.fetchrow(
        """
        SELECT v.journey_key AS key, j.name, v.version, v.published_at, v.definition
        FROM journey_versions v JOIN journeys j ON j.key = v.journey_key
        WHERE v.journey_key = $1 AND v.version = COALESCE($2, j.latest_version)
        """,
        key,
        version,
    )
    return PublishedJourney.model_validate(dict(row)) if row else None


async def list_versions(pool: asyncpg.Pool, key: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT version, published_at FROM journey_versions
           WHERE journey_key = $1 ORDER BY version""",
        key,
    )
    return [dict(r) for r in rows]


async def journeys_entered_by(pool: asyncpg.Pool, entry: dict[str, Any]) -> list[PublishedJourney]:
    """The latest versions of the journeys whose entry contains `entry`
    (`{"type": "event", "name": "order_placed"}`)."""
    return await _latest_versions(pool, "v.definition -> 'entry' @> $1::jsonb", entry)


async def journeys_entered_on_fields(
    pool: asyncpg.Pool, fields: list[str]
) -> list[PublishedJourney]:
    """The latest versions of the journeys entered when one of `fields` changes."""
    return await _latest_versions(
        pool,
        """v.definition -> 'entry' ->> 'type' = 'field_change'
           AND v.definition -> 'entry' ->> 'field' = ANY($1::text[])""",
        fields,
    )


async def _latest_versions(pool: asyncpg.Pool, where: str, arg: Any) -> list[PublishedJourney]:
    """The latest version of each journey whose definition `where` (a constant
    condition on `v.definition`, with `$1`) selects."""
    rows = await pool.fetch(
        f"""
        SELECT v.journey_key AS key, j.name, v.version, v.published_at, v.definition
        FROM journeys j JOIN journey_versions v
             ON v.journey_key = j.key AND v.version = j.latest_version
        WHERE {where}
        ORDER BY j.key
        """,
        arg,
    )
    return [PublishedJourney.model_validate(dict(r)) for r in rows]


class JourneySummary(BaseModel):
    key: str
    name: str
    version: int
    published_at: datetime


async def list_journeys(pool: asyncpg.Pool) -> list[JourneySummary]:
    """Every journey with its latest version, by name."""
    rows = await pool.fetch(
        """SELECT j.key, j.name, j.latest_version AS version, v.published_at
           FROM journeys j JOIN journey_versions v
                ON v.journey_key = j.key AND v.version = j.latest_version
           ORDER BY lower(j.name), j.key"""
    )
    return [JourneySummary.model_validate(dict(r)) for r in rows]
