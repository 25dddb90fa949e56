"""Migrations apply on start, also when several processes start at once."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import asyncpg
import pytest

import journeys.migrate
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


def test_an_installed_package_carries_its_migrations(tmp_path: Path) -> None:
    """A wheel (what `pip install .` and the container image install) has the SQL files:
    without them `journeys migrate` found nothing to apply on an empty database."""
    root = Path(__file__).resolve().parent.parent
    # Built from a clean copy: a build/ or *.egg-info left in the work tree would lend
    # the wheel files the package does not declare.
    source = tmp_path / "source"
    shutil.copytree(
        root,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".journeys"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=source,
        check=True,
        timeout=600,
    )
    [wheel] = tmp_path.glob("journeys-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"journeys/migrations/{p.name}" for p in MIGRATIONS_DIR.glob("*.sql")}
    assert len(expected) >= 12 and expected <= names


def test_migrate_refuses_an_install_without_migrations(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journeys.migrate, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="no migrations in"):
        migrate(postgres_url)
