"""A PostgreSQL outage in the worker's log: one line when it begins, one when it ends.

Participants are sending when PostgreSQL stops (as an administrator's restart does),
so every part of the worker meets the outage: the sends and their lease renewals, the
writes of `sent`, the event dispatcher and its LISTEN, the sweep of enrolment intents,
asyncpg's pool restoring its connection floor. Before, that was about 55 warnings a
second and a traceback from the pool every second or two; a reader learns as much from
two lines. Every failure is still logged at debug level.

The PostgreSQL is the test's own (stopping the session's would break the other tests),
and the worker and the API run as `journeys worker` and `journeys api` logging at info,
as in production.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.faults import Postgres, two_mails
from bench.load import wait_until
from bench.stack import Stack
from journeys.devstack import TemporalDevServer, free_port
from journeys.mailsink import MailSink
from journeys.migrate import migrate
from journeys.outages import OutageLog, QuietPoolLog

N = 40
OUTAGE_SECONDS = 8.0


def _lines(text: str) -> list[dict[str, Any]]:
    """The log's JSON lines (a line that is not JSON is kept as its text)."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip():  # an empty line says nothing (one was seen once in CI)
            continue
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"event": raw, "level": "raw"})
    return lines


class OwnStack:
    def __init__(self, postgres: Postgres, stack: Stack, http: httpx.AsyncClient) -> None:
        self.postgres, self.stack, self.http = postgres, stack, http

    @property
    def worker_log(self) -> Path:
        return self.stack.home / "worker.log"

    async def sent(self, key: str) -> int:
        conn = await asyncpg.connect(self.postgres.url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM messages WHERE journey_key = $1 AND status = 'sent'",
                    key,
                )
            )
        finally:
            await conn.close()


@pytest.fixture
async def own_stack(tmp_path: Path) -> AsyncIterator[OwnStack]:
    async with AsyncExitStack() as exit_stack:
        # Outside pytest's temporary folder: another pytest session sets that back to
        # 0700, and pg_ctl (run as PostgreSQL's own user) could no longer reach it.
        home = Path(tempfile.mkdtemp(prefix="journeys-outage-"))
        exit_stack.callback(shutil.rmtree, home, ignore_errors=True)
        postgres = Postgres(home / "data")
        exit_stack.callback(postgres.cleanup)
        await asyncio.to_thread(migrate, postgres.url)
        temporal = TemporalDevServer(
            tmp_path / "temporal.db", port=free_port(), ui_port=None, log_file=tmp_path / "t.log"
        )
        await temporal.start()
        exit_stack.callback(temporal.stop)
        sink = await exit_stack.enter_async_context(MailSink(tmp_path / "mail", port=0))
        stack = Stack(
            home=tmp_path,
            run_id="outage",
            temporal_address=temporal.address,
            namespace="default",
            database_url=postgres.url,
            smtp_url=f"smtp://127.0.0.1:{sink.port}",
            api_url=f"http://127.0.0.1:{free_port()}",
            api_key=secrets.token_urlsafe(24),
            secret=secrets.token_urlsafe(32),
            task_queue="outage-logs",
            floor_task_queue="",
            embedded={"postgres": True, "temporal": True, "smtp": False},
        )

        def stop_children() -> None:
            for name in list(stack.procs):
                stack.stop_proc(name)

        exit_stack.callback(stop_children)
        stack.client = await Client.connect(
            temporal.address, data_converter=pydantic_data_converter
        )
        await asyncio.gather(stack.start_worker(), stack.start_api())
        http = await exit_stack.enter_async_context(
            httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {stack.api_key}"},
                timeout=60,
            )
        )
        yield OwnStack(postgres, stack, http)


async def test_a_postgres_outage_is_two_lines_in_the_worker_log(own_stack: OwnStack) -> None:
    http = own_stack.http
    ids = []
    for i in range(N):
        made = await http.post(
            "/contacts", json={"external_id": f"o{i}", "email": f"o{i}@outage.example"}
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    key = "outage-logs"
    assert (await http.post("/journeys", json=two_mails(key, "PT4S"))).status_code == 201
    enrolled = await http.post(f"/journeys/{key}/enrolments", json={"contact_ids": ids})
    assert enrolled.status_code == 200, enrolled.text

    async def first_mails_going() -> bool:
        return await own_stack.sent(key) >= N // 2

    await wait_until(first_mails_going, timeout=60, what="the first mails")
    log = own_stack.worker_log
    offset = log.stat().st_size
    await asyncio.to_thread(own_stack.postgres.stop)
    await asyncio.sleep(OUTAGE_SECONDS)
    await asyncio.to_thread(own_stack.postgres.start)

    async def all_sent() -> bool:
        return await own_stack.sent(key) == 2 * N

    await wait_until(all_sent, timeout=120, what="every mail after the outage")
    await asyncio.sleep(3)  # whatever the worker still had to say about it
    text = log.read_bytes()[offset:].decode("utf-8", "replace")
    lines = _lines(text)
    loud = [line for line in lines if line.get("level") not in ("info", "debug")]
    summary = [(line.get("level"), line.get("event"), line.get("backend")) for line in loud]
    seen = f"{text.count('Traceback')} tracebacks; {Counter(summary).most_common()}"
    assert summary == [
        ("warning", "outage.began", "PostgreSQL"),
        ("warning", "outage.ended", "PostgreSQL"),
    ], seen
    assert "Traceback" not in text, seen
    began, ended = loud
    assert began["reason"] and began["seen_in"], began
    # The worker met the outage many times, and says so once.
    assert ended["failures"] > 1 and ended["seconds"] >= OUTAGE_SECONDS / 2, ended


async def test_the_outage_log_says_began_and_ended_once_each() -> None:
    """The states alone, with a check that fails until told otherwise."""
    outages = OutageLog()
    back = asyncio.Event()

    async def check() -> None:
        if not back.is_set():
            raise ConnectionRefusedError("still down")

    assert not outages.failed("PostgreSQL", "activity.retry", "refused")  # not watched
    unwatch = outages.watch("PostgreSQL", check)
    try:
        with structlog.testing.capture_logs() as logs:
            for attempt in range(50):
                assert outages.failed("PostgreSQL", "activity.retry", "refused", attempt=attempt)
            assert not outages.failed("the mail server", "activity.retry", "421")
            assert outages.is_down("PostgreSQL")
            await asyncio.sleep(1.5)  # checked once at least, still down
            back.set()
            for _ in range(40):
                if not outages.is_down("PostgreSQL"):
                    break
                await asyncio.sleep(0.1)
            outages.failed("PostgreSQL", "dispatch.outage", "refused again")
        loud = [(e["event"], e.get("failures")) for e in logs if e["log_level"] == "warning"]
        assert loud == [("outage.began", None), ("outage.ended", 50), ("outage.began", None)]
        assert sum(e["event"] == "activity.retry" for e in logs) == 49  # at debug level
    finally:
        unwatch()
    assert not outages.is_down("PostgreSQL")


async def test_two_watchers_of_one_backend_keep_their_own_watch() -> None:
    """Two workers in one process (tests run a second one) each watch PostgreSQL with
    their own pool: the one that stops leaves the other's watch, and its check, alone,
    and its own check (a closed pool) is asked no more."""
    outages = OutageLog()
    back = asyncio.Event()
    asked: list[str] = []

    def checker(name: str, ok: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
        async def check() -> None:
            asked.append(name)
            if not ok():
                raise ConnectionRefusedError(f"{name}: down")

        return check

    stop_first = outages.watch("PostgreSQL", checker("first", lambda: False))  # closed pool
    stop_second = outages.watch("PostgreSQL", checker("second", back.is_set))
    try:
        stop_first()  # the first worker exits
        stop_first()  # twice is once
        with structlog.testing.capture_logs() as logs:
            assert outages.failed("PostgreSQL", "activity.retry", "refused")  # still watched
            await asyncio.sleep(1.3)
            back.set()
            for _ in range(40):
                if not outages.is_down("PostgreSQL"):
                    break
                await asyncio.sleep(0.1)
        assert not outages.is_down("PostgreSQL")  # the outage ended, by the second's check
        assert "first" not in asked and "second" in asked
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "outage.began",
            "outage.ended",
        ]
    finally:
        stop_second()
    assert not outages.failed("PostgreSQL", "activity.retry", "refused")  # nobody watches


def test_the_pools_reconnection_attempts_carry_no_traceback() -> None:
    """Where nobody watches PostgreSQL (no running loop here), asyncpg's line stays,
    with the reason and without the traceback; other records are left alone."""
    quiet = QuietPoolLog()
    try:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is shutting down")
    except asyncpg.PostgresError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "Failed; retrying", None, sys.exc_info()
        )
    assert quiet.filter(record) and record.exc_info is None
    assert record.getMessage() == (
        "Failed; retrying: CannotConnectNowError: the database system is shutting down"
    )
    try:
        raise ValueError("a bug")
    except ValueError:
        bug = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "Failed", None, sys.exc_info()
        )
    assert quiet.filter(bug) and bug.exc_info is not None
