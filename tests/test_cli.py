"""The deployment commands refuse bad configuration with a message, not a traceback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import httpx
import pytest

from activities.message import compose, sending_domain
from journeys.devstack import free_port
from journeys.settings import Settings


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


@pytest.mark.parametrize(
    "sender",
    ["journeys", "news@shop.example, sales@shop.example", "a@b@c", "news@bü_cher.example", "<>"],
)
def test_a_sender_no_mail_can_go_out_from_stops_the_worker(sender: str) -> None:
    """An invalid JOURNEYS_MAIL_FROM failed every send for good, one by one; now the
    worker refuses to start, naming the variable (before the database is asked)."""
    with pytest.raises(ValueError, match="JOURNEYS_MAIL_FROM"):
        Settings(secret="s", mail_from=sender)
    done = journeys("worker", JOURNEYS_SECRET="s", JOURNEYS_MAIL_FROM=sender)
    assert done.returncode == 1
    assert "JOURNEYS_MAIL_FROM" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "sender",
    [
        "Journeys <journeys@localhost>",
        "news@shop.example",
        '"Shop, Inc." <news@Shop.Example>',
        "Büro <news@bücher.example>",
    ],
)
def test_a_sender_mail_can_go_out_from_is_taken(sender: str) -> None:
    settings = Settings(secret="s", mail_from=sender)
    mail = compose(
        sender=settings.mail_from,
        return_path=settings.mail_from,
        to="ann@example.com",
        subject="s",
        text="t",
        html="<p>t</p>",
        headers={"Message-ID": f"<1@{sending_domain(settings.mail_from)}>"},
    )
    assert mail.envelope_from.isascii() and "@" in mail.envelope_from


def test_migrate_names_a_bad_database_url() -> None:
    done = journeys("migrate", DATABASE_URL="mysql://localhost/x")
    assert done.returncode == 1
    assert "DATABASE_URL must start with postgresql://" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_applies_and_then_has_nothing_to_do(postgres_url: str) -> None:
    done = journeys("migrate", DATABASE_URL=postgres_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "schema is up to date"  # the session fixture migrated already


@pytest.mark.parametrize("public_url", ["http://links.example.com", "https://links.example.com"])
def test_api_warns_when_links_are_not_https(postgres_url: str, public_url: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYS_", "DATABASE_"))}
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "journeys.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env={
            **clean,
            "DATABASE_URL": postgres_url,
            "JOURNEYS_API_KEY": "k",
            "JOURNEYS_SECRET": "s",
            "JOURNEYS_PUBLIC_URL": public_url,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code in (200, 503):
                    break
            time.sleep(0.2)
    finally:
        api.terminate()
        _, stderr = api.communicate(timeout=30)
    warnings = [line for line in stderr.splitlines() if "public_url.not_https" in line]
    if public_url.startswith("http://"):
        assert len(warnings) == 1 and "RFC 8058" in warnings[0]
    else:
        assert warnings == []
