"""The deployment commands refuse bad configuration with a message, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def journeys(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYS_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "journeys.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "missing"),
    [("api", "JOURNEYS_API_KEY and JOURNEYS_SECRET"), ("worker", "JOURNEYS_SECRET")],
)
def test_api_and_worker_need_their_secrets(command: str, missing: str) -> None:
    done = journeys(command)
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"journeys {command}: ConfigError: set {missing} in the environment"
    )


def test_migrate_names_a_bad_database_url() -> None:
    done = journeys("migrate", DATABASE_URL="mysql://localhost/x")
    assert done.returncode == 1
    assert "DATABASE_URL must start with postgresql://" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_applies_and_then_has_nothing_to_do(postgres_url: str) -> None:
    done = journeys("migrate", DATABASE_URL=postgres_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "schema is up to date"  # the session fixture migrated already
