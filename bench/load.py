"""Load generation: a closed loop with fixed concurrency, an open loop at a
fixed rate, polling with a deadline, and the progress line."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.report import latency_summary, rate


class Progress:
    """One status line per phase: rewritten in place on a terminal, else a line every few s."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.label, self.total, self.done = "", 0, 0
        self._phase_start = self._last = 0.0

    def _stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def note(self, text: str) -> None:
        self._clear()
        print(f"{self._stamp()} {text}", file=self.stream, flush=True)

    def phase(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self._phase_start = self._last = time.monotonic()
        self._show(force=True)

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._show()

    def set(self, done: int) -> None:
        self.done = done
        self._show()

    def finish(self, summary: str = "") -> None:
        self._clear()
        elapsed = time.monotonic() - self._phase_start
        tail = f": {summary}" if summary else ""
        print(
            f"{self._stamp()} {self.label} {self.done}/{self.total} in {elapsed:.1f}s{tail}",
            file=self.stream,
            flush=True,
        )
        self.label = ""

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = 0.2 if self.tty else 5.0
        if not force and now - self._last < interval:
            return
        self._last = now
        elapsed = now - self._phase_start
        speed = f", {self.done / elapsed:,.0f}/s" if elapsed > 0.5 and self.done else ""
        text = f"{self._stamp()} {self.label} {self.done}/{self.total}{speed}"
        if self.tty:
            print(f"\r\x1b[2K{text}", end="", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty and self.label:
            print("\r\x1b[2K", end="", file=self.stream, flush=True)


@dataclass
class LoadResult:
    """What a run of n operations did: successes, errors, time and latencies (seconds)."""

    n: int
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    # Until what the operations set off was done too (clicks delivered to their runs).
    delivered_elapsed: float | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float | None:
        return rate(self.ok, self.elapsed)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": round(self.elapsed, 3),
            "per_second": self.rate,
            "latency": latency_summary(self.latencies),
        }

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:500]


Operation = Callable[[int], Awaitable[Any]]


class Counter(Protocol):
    """Anything that counts finished operations, such as a Progress."""

    def advance(self, count: int = 1) -> None: ...


async def _timed(
    result: LoadResult, op: Operation, i: int, since: float, progress: Counter | None
) -> None:
    """Run op(i); record its latency from `since`, or its failure."""
    try:
        await op(i)
    except Exception as exc:
        result._failed(exc)
    else:
        result.latencies.append(time.perf_counter() - since)
    if progress:
        progress.advance()


async def closed_loop(
    n: int, concurrency: int, op: Operation, progress: Counter | None = None
) -> LoadResult:
    """Run op(0..n-1) with `concurrency` operations in flight at any time."""
    result = LoadResult(n)
    indices = iter(range(n))

    async def lane() -> None:
        for i in indices:  # one iterator shared by all lanes: each index runs once
            await _timed(result, op, i, time.perf_counter(), progress)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, n)))))
    result.elapsed = time.perf_counter() - start
    return result


async def open_loop(
    n: int, per_second: float, op: Operation, progress: Counter | None = None
) -> LoadResult:
    """Start op(i) at t0 + i / per_second whatever the earlier ones do.

    Latency counts from when the operation was due, not from when the client got
    round to it, so a client that falls behind shows up in the figures.
    """
    result = LoadResult(n)
    t0 = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        due = t0 + i / per_second
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await _timed(result, op, i, due, progress)

    await asyncio.gather(*(one(i) for i in range(n)))
    result.elapsed = time.perf_counter() - t0
    return result


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str = "the condition",
) -> float:
    """Poll `check` until true; returns the seconds waited. Raises TimeoutError."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s")
        await asyncio.sleep(interval)
