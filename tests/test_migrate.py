"""Migrations apply on start, also when several processes start at once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from journeys.migrate import MIGRATIONS_DIR, migrate


async def test_two_processes_migrating_at_once(postgres_url: str) -> None:
    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url.replace("/postgres?", f"/{name}?")
    assert url != postgres_url

    applied = await asyncio.gather(*(asyncio.to_thread(migrate, url) for _ in range(4)))
    expected = sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))
    # Exactly one of them applied everything; the others found nothing to do.
    assert sorted(applied, key=len) == [[], [], [], expected]
    assert migrate(url) == []

    conn = await asyncpg.connect(url)
    tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    assert {"contacts", "journeys", "journey_versions", "messages", "enrolments"} <= tables
    await conn.close()
    await admin.execute(f'DROP DATABASE "{name}"')
    await admin.close()
