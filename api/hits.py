"""Tracking hits that could not be stored yet: kept in memory and stored later.

Opens and clicks are answered at once whatever happens behind them (the target
of a click is in its signed token). While PostgreSQL is away, hits wait here in
order and a background task stores them when it is back, so an outage of a few
minutes loses no click. Each hit carries its own id (a unique index) so a hit
whose insert did reach the database before timing out is not stored twice.

The buffer is bounded: past `MAX_HITS` the oldest hits are dropped and counted
in the log, as are hits still waiting when the process stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from journeys.outages import outage_of
from journeys.store.messages import record_message_event

log = structlog.get_logger(__name__)

MAX_HITS = 50_000
# A hit waits this long for its insert before it is answered and kept for later.
INSERT_SECONDS = 1.0
FLUSH_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Hit:
    id: uuid.UUID
    message_id: uuid.UUID
    kind: str
    url: str | None
    at: datetime


class HitBuffer:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.waiting: deque[Hit] = deque()
        self.dropped = 0
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, message_id: uuid.UUID, kind: str, url: str | None) -> bool | None:
        """Store a hit: True when stored, False for an unknown message, None when it
        waits in the buffer (the database is away)."""
        hit = Hit(uuid.uuid4(), message_id, kind, url, datetime.now(UTC))
        if self.waiting:  # the database is known to be away: keep the order, do not wait
            self._keep(hit)
            return None
        try:
            async with asyncio.timeout(INSERT_SECONDS):
                return await self._store(hit)
        except Exception as exc:
            if not isinstance(exc, TimeoutError) and outage_of(exc) is None:
                raise
            log.warning("tracking.buffered", kind=kind, error=repr(exc))
            self._keep(hit)
            return None

    async def _store(self, hit: Hit) -> bool:
        return await record_message_event(
            self.pool, hit.message_id, hit.kind, hit.url, at=hit.at, hit_id=hit.id
        )

    def _keep(self, hit: Hit) -> None:
        if len(self.waiting) >= MAX_HITS:
            self.waiting.popleft()
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("tracking.lost", dropped=self.dropped, waiting=len(self.waiting))
        self.waiting.append(hit)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _drain(self) -> None:
        while self.waiting:
            await self._store(self.waiting[0])  # an unknown message stores nothing
            self.waiting.popleft()

    async def _flush(self) -> None:
        while self.waiting:
            await asyncio.sleep(FLUSH_EVERY_SECONDS)
            try:
                await self._drain()
            except Exception as exc:
                if outage_of(exc) is None:
                    log.exception("tracking.flush_failed", waiting=len(self.waiting))
                    self.waiting.popleft()  # a hit that cannot be stored must not block others
                continue
            log.info("tracking.flushed")

    async def close(self) -> None:
        """Stop flushing; store what still waits if the database answers in time."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._drain()
        if self.waiting:
            log.error("tracking.lost", dropped=self.dropped + len(self.waiting), at="shutdown")
