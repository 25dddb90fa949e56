"""The system under test: the embedded stack (or the services named by
TEMPORAL_ADDRESS / DATABASE_URL / SMTP_URL), the product's API and worker, the
bare floor worker and the SMTP sink, each in a process of its own.

Also measures them: CPU seconds per process, the worker's RSS, and the bytes
the Temporal and PostgreSQL databases hold.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.load import Progress, wait_until


class Proc:
    """A child process with its output in a log file (stdout piped when it reports READY)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_line: bool = False,
    ) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.env = env
        self.ready_line = ready_line
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE if self.ready_line else self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the bench only; it stops the children
        )

    async def ready(self, timeout: float = 60) -> str:
        """The text after READY on the first line of stdout."""
        assert self.popen is not None and self.popen.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(self.popen.stdout.readline), timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.name} did not start; see {self.log_path}") from None
        text = line.decode().strip()
        if not text.startswith("READY"):
            raise RuntimeError(f"{self.name} did not start; see {self.log_path}")
        return text.removeprefix("READY").strip()

    def check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            code = None if self.popen is None else self.popen.returncode
            raise RuntimeError(f"{self.name} exited (code {code}); see {self.log_path}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen is not None and self.popen.stdout is not None:
            self.popen.stdout.close()
        if self._log is not None:
            self._log.close()


def _cpu_seconds(proc: psutil.Process, children: bool = True) -> float:
    """CPU time of a process and (unless told not to) of its children, live or reaped."""
    try:
        t = proc.cpu_times()
        if not children:
            return float(t.user + t.system)
        total = float(t.user + t.system + t.children_user + t.children_system)
        for child in proc.children(recursive=True):
            with suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
    except psutil.Error:
        return 0.0
    return total


@dataclass
class Stack:
    """Addresses and secrets of the running system, and handles to measure it."""

    home: Path
    run_id: str
    temporal_address: str
    namespace: str
    database_url: str
    smtp_url: str
    api_url: str
    api_key: str
    secret: str
    task_queue: str
    floor_task_queue: str
    embedded: dict[str, bool]
    temporal_db: Path | None = None
    # The worker's connections to the relay: as many as the floor's, like for like.
    smtp_connections: int = 8
    procs: dict[str, Proc] = field(default_factory=dict)
    watched: dict[str, psutil.Process] = field(default_factory=dict)
    client: Client | None = None  # pydantic converter, like the product's processes
    floor_client: Client | None = None  # the SDK's default converter

    # --- measuring -------------------------------------------------------------------------

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far of each process, and `others`: the rest of the machine."""
        # The bench's children are the processes watched by name: count them there only.
        ours = {name: _cpu_seconds(p, children=name != "bench") for name, p in self.watched.items()}
        machine = psutil.cpu_times()
        busy = sum(
            getattr(machine, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal")
        )
        ours["others"] = busy - sum(ours.values())
        return ours

    @staticmethod
    def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after.get(k, 0.0) - v, 3) for k, v in before.items()}

    def worker_rss(self) -> int | None:
        worker = self.watched.get("worker")
        if worker is None:
            return None
        try:
            return int(worker.memory_info().rss)
        except psutil.Error:
            return None

    def temporal_db_bytes(self) -> dict[str, int] | None:
        """Bytes in use in the dev server's SQLite file (pages minus free pages), and on disk."""
        if self.temporal_db is None:
            return None
        files = [self.temporal_db, Path(f"{self.temporal_db}-wal")]
        on_disk = sum(p.stat().st_size for p in files if p.exists())
        used = None
        with suppress(sqlite3.Error):
            conn = sqlite3.connect(f"file:{self.temporal_db}?mode=ro", uri=True, timeout=10)
            try:
                pages = conn.execute("PRAGMA page_count").fetchone()[0]
                free = conn.execute("PRAGMA freelist_count").fetchone()[0]
                size = conn.execute("PRAGMA page_size").fetchone()[0]
                used = (pages - free) * size
            finally:
                conn.close()
        return {"used": used if used is not None else on_disk, "on_disk": on_disk}

    async def _describe_workflow_queue(self, task_queue: str, *, stats: bool) -> Any:
        assert self.client is not None
        return await self.client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                report_stats=stats,
            )
        )

    async def backlog(self, task_queue: str) -> int:
        """Approximate number of workflow tasks waiting on a task queue."""
        response = await self._describe_workflow_queue(task_queue, stats=True)
        return int(response.stats.approximate_backlog_count)

    async def pollers(self, task_queue: str) -> list[str]:
        response = await self._describe_workflow_queue(task_queue, stats=False)
        return [p.identity for p in response.pollers]

    # --- the product's processes -----------------------------------------------------------

    def product_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
        env.update(
            TEMPORAL_ADDRESS=self.temporal_address,
            TEMPORAL_NAMESPACE=self.namespace,
            DATABASE_URL=self.database_url,
            SMTP_URL=self.smtp_url,
            SMTP_CONNECTIONS=str(self.smtp_connections),
            JOURNEYS_API_KEY=self.api_key,
            JOURNEYS_SECRET=self.secret,
            JOURNEYS_PUBLIC_URL=self.api_url,
            JOURNEYS_TASK_QUEUE=self.task_queue,
            JOURNEYS_LOG_LEVEL=os.environ.get("JOURNEYS_LOG_LEVEL", "info"),
        )
        return env

    async def start_worker(self, name: str = "worker") -> Proc:
        """Start `journeys worker` and wait until it polls the task queue."""
        proc = Proc(
            name,
            [sys.executable, "-m", "journeys.cli", "worker"],
            self.home / f"{name}.log",
            env=self.product_env(),
        )
        proc.start()
        self.procs[name] = proc

        async def polling() -> bool:
            proc.check_alive()
            return any(i.startswith(f"{proc.pid}@") for i in await self.pollers(self.task_queue))

        await wait_until(polling, timeout=90, what="the product's worker to poll")
        self.watched[name] = psutil.Process(proc.pid)
        return proc

    def stop_proc(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        self.watched.pop(name, None)
        if proc is not None:
            proc.stop()

    async def restart_worker(self) -> None:
        self.stop_proc("worker")
        await self.start_worker()

    async def start_api(self) -> Proc:
        port = int(self.api_url.rsplit(":", 1)[1])
        proc = Proc(
            "api",
            [
                sys.executable,
                "-m",
                "journeys.cli",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            self.home / "api.log",
            env=self.product_env(),
        )
        proc.start()
        self.procs["api"] = proc

        async def healthy() -> bool:
            proc.check_alive()
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    return (await http.get(f"{self.api_url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(healthy, timeout=90, what="the API to answer /healthz")
        self.watched["api"] = psutil.Process(proc.pid)
        return proc


async def _postgres_pid(database_url: str) -> int | None:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await conn.close()
    with suppress(psutil.Error):
        parent = psutil.Process(int(backend)).parent()
        return parent.pid if parent is not None else None
    return None


def _free_port() -> int:
    from journeys.devstack import free_port

    return free_port()


async def start_stack(
    stack_exit: AsyncExitStack, progress: Progress, home: Path, *, smtp_connections: int = 8
) -> Stack:
    """Start everything, keeping data and logs in `home`; `stack_exit` stops it all again."""
    from journeys.devstack import TemporalDevServer, start_postgres
    from journeys.migrate import migrate

    run_id = time.strftime("%H%M%S") + secrets.token_hex(2)
    watched: dict[str, psutil.Process] = {"bench": psutil.Process()}

    database_url = os.environ.get("DATABASE_URL")
    postgres_embedded = not database_url
    if not database_url:
        progress.note("starting embedded PostgreSQL")
        server = await asyncio.to_thread(start_postgres, home / "postgres")
        stack_exit.callback(server.cleanup)
        database_url = server.get_uri()
        with suppress(Exception):
            watched["postgres"] = psutil.Process(int(server.get_pid()))
    elif (pid := await _postgres_pid(database_url)) is not None:
        with suppress(psutil.Error):
            # Only when the server runs on this machine as a visible process.
            proc = psutil.Process(pid)
            if "postgres" in proc.name():
                watched["postgres"] = proc

    temporal_address = os.environ.get("TEMPORAL_ADDRESS")
    temporal_db = None
    if not temporal_address:
        progress.note("starting the Temporal dev server (SQLite file, WAL pragmas)")
        temporal_db = home / "temporal.db"
        temporal = TemporalDevServer(
            temporal_db, port=_free_port(), ui_port=None, log_file=home / "temporal.log"
        )
        await temporal.start()
        stack_exit.callback(temporal.stop)
        temporal_address = temporal.address
        assert temporal.process is not None
        watched["temporal"] = psutil.Process(temporal.process.pid)
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")

    procs: dict[str, Proc] = {}
    smtp_url = os.environ.get("SMTP_URL")
    if not smtp_url:
        sink = Proc(
            "sink",
            [sys.executable, "-m", "bench.procs", "sink", "--folder", str(home / "mail")],
            home / "sink.log",
            ready_line=True,
        )
        sink.start()
        stack_exit.callback(sink.stop)
        smtp_url = f"smtp://127.0.0.1:{await sink.ready()}"
        procs["sink"] = sink
        watched["sink"] = psutil.Process(sink.pid)

    stack = Stack(
        home=home,
        run_id=run_id,
        temporal_address=temporal_address,
        namespace=namespace,
        database_url=database_url,
        smtp_url=smtp_url,
        api_url=f"http://127.0.0.1:{_free_port()}",
        api_key=secrets.token_urlsafe(24),
        secret=secrets.token_urlsafe(32),
        task_queue=f"bench-journeys-{run_id}",
        floor_task_queue=f"bench-floor-{run_id}",
        embedded={
            "postgres": postgres_embedded,
            "temporal": temporal_db is not None,
            "smtp": "sink" in procs,
        },
        temporal_db=temporal_db,
        smtp_connections=smtp_connections,
        procs=procs,
        watched=watched,
    )

    def stop_children() -> None:
        for name in list(stack.procs):
            stack.stop_proc(name)

    stack_exit.callback(stop_children)
    await asyncio.to_thread(migrate, database_url)
    stack.client = await Client.connect(
        temporal_address, namespace=namespace, data_converter=pydantic_data_converter
    )
    stack.floor_client = await Client.connect(temporal_address, namespace=namespace)

    progress.note("starting the floor worker, the product's worker and API")
    floor = Proc(
        "floor_worker",
        [
            sys.executable,
            "-m",
            "bench.procs",
            "floor-worker",
            "--address",
            temporal_address,
            "--namespace",
            namespace,
            "--task-queue",
            stack.floor_task_queue,
        ],
        home / "floor-worker.log",
        ready_line=True,
    )
    floor.start()
    stack.procs["floor_worker"] = floor
    await floor.ready()
    watched["floor_worker"] = psutil.Process(floor.pid)
    await asyncio.gather(stack.start_worker(), stack.start_api())
    return stack


def any_log_tail(stack: Stack, lines: int = 20) -> dict[str, Any]:
    """The last lines of each child's log, for the JSON when something failed."""
    tails: dict[str, Any] = {}
    for path in sorted(stack.home.glob("*.log")):
        with suppress(OSError):
            tails[path.name] = path.read_text(errors="replace").splitlines()[-lines:]
    return tails
