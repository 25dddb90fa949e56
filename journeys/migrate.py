"""Schema migrations: the SQL files in `journeys/migrations` (package data, so an
installed wheel carries them), applied with yoyo.

yoyo records what it applied and runs each file in a transaction. Two processes
starting at once (API and worker) would both try to create yoyo's own tables,
so the whole run is serialised by a PostgreSQL advisory lock first.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x4A6F75726E657973  # "Journeys"


def _yoyo_uri(database_url: str) -> str:
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must start with postgresql://")
    return f"postgresql+psycopg://{rest}"


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; returns the ids of those applied now."""
    yoyo_uri = _yoyo_uri(database_url)
    with psycopg.connect(database_url, autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            backend = get_backend(yoyo_uri)
            try:
                migrations = read_migrations(str(MIGRATIONS_DIR))
                if not migrations:
                    # An install without its SQL files would report "up to date" on an
                    # empty database and fail later on every query.
                    raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}: a broken install")
                with backend.lock():
                    pending = backend.to_apply(migrations)
                    backend.apply_migrations(pending)
            finally:
                backend.connection.close()
            return [m.id for m in pending]
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
