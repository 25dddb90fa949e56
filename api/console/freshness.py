"""Numbers kept for a few seconds and renewed behind the reader (stale-while-revalidate).

Why: the console's counts come from Temporal visibility, one count per number. On the
embedded stack's SQLite visibility a count over a journey of 10,000 runs takes 35 to
60 ms and counts queue one behind the other (measured: 12 at once took 0.69 s), so a
six-step graph's 15 counts take over half a second. So a page shows numbers counted
at most `FRESH_SECONDS` ago as they are; older ones (up to `STALE_SECONDS`) are shown
at once while new ones are counted in the background; older still, or never counted,
the page waits for the count. Pages say when their numbers were counted. One count
per key is in flight at a time, however many pages ask (the live refresh of every
open journey page asks every 3 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

FRESH_SECONDS = 2.0
STALE_SECONDS = 60.0
# Keys not asked for this long are dropped (journeys nobody looks at).
FORGET_SECONDS = 600.0


@dataclass
class _Entry(Generic[T]):
    value: T | None = None
    counted_at: float = 0.0  # monotonic
    counted_at_utc: datetime | None = None
    asked_at: float = 0.0
    counting: asyncio.Task[None] | None = None
    error: BaseException | None = None


class Freshness:
    """Values by key, each renewed by the function that computes it."""

    def __init__(
        self,
        fresh: float = FRESH_SECONDS,
        stale: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fresh, self.stale, self.clock = fresh, stale, clock
        self._entries: dict[str, _Entry[Any]] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[T]]) -> tuple[T, datetime]:
        """The value of `key` and when it was computed (UTC)."""
        entry = self._lookup(key, compute)
        if entry.counting is not None and not self._showable(entry):
            # Shielded: a page that goes away does not cancel a count others wait for.
            await asyncio.shield(entry.counting)
        return self._answer(key, entry)

    async def get_within(
        self, key: str, compute: Callable[[], Awaitable[T]], seconds: float
    ) -> tuple[T, datetime] | None:
        """As `get`, but None when a count it has to wait for takes longer than
        `seconds`; the count goes on, and a later ask finds its value."""
        entry = self._lookup(key, compute)
        if entry.counting is not None and not self._showable(entry):
            done, _ = await asyncio.wait({entry.counting}, timeout=seconds)
            if not done:
                return None
        return self._answer(key, entry)

    def _lookup(self, key: str, compute: Callable[[], Awaitable[T]]) -> _Entry[T]:
        """The entry of `key`, a count started when its value is stale or missing."""
        now = self.clock()
        self._forget(now)
        entry: _Entry[T] = self._entries.setdefault(key, _Entry())
        entry.asked_at = now
        if entry.counting is None and (entry.value is None or now - entry.counted_at > self.fresh):
            self._start(key, entry, compute)
        return entry

    def _showable(self, entry: _Entry[T]) -> bool:
        return entry.value is not None and self.clock() - entry.counted_at <= self.stale

    def _answer(self, key: str, entry: _Entry[T]) -> tuple[T, datetime]:
        if not self._showable(entry):
            raise entry.error or RuntimeError(f"no value for {key}")
        assert entry.value is not None and entry.counted_at_utc is not None
        return entry.value, entry.counted_at_utc

    def _start(self, key: str, entry: _Entry[T], compute: Callable[[], Awaitable[T]]) -> None:
        async def count() -> None:
            try:
                value = await compute()
            except Exception as exc:
                # Kept for whoever waits for this count; a stale value stays as it was.
                entry.error = exc
                log.warning("console.count_failed", key=key, error=type(exc).__name__)
            else:
                entry.value, entry.error = value, None
                entry.counted_at, entry.counted_at_utc = self.clock(), datetime.now(UTC)
            finally:
                entry.counting = None

        entry.counting = asyncio.get_running_loop().create_task(count())

    def _forget(self, now: float) -> None:
        for key in [
            k
            for k, e in self._entries.items()
            if e.counting is None and now - e.asked_at > FORGET_SECONDS
        ]:
            del self._entries[key]
