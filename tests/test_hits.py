"""The API's buffer for tracking hits while PostgreSQL is away (a fake pool stands in)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from api import hits as hits_module
from api.hits import HitBuffer


class FlakyPool:
    """Answers like the real insert (true when the message exists), or fails as an
    unreachable server does."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[tuple[Any, ...]] = []
        self.calls = 0

    async def fetchval(self, query: str, *args: Any) -> bool | None:
        self.calls += 1
        if self.down:
            raise asyncpg.PostgresConnectionError("connection refused")
        message_id = args[0]
        if message_id.int == 0:
            return None
        self.stored.append(args)
        return True


@pytest.fixture(autouse=True)
def quick_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hits_module, "FLUSH_EVERY_SECONDS", 0.01)


async def test_hits_wait_while_the_database_is_away_and_are_stored_in_order_after() -> None:
    pool = FlakyPool()
    buffer = HitBuffer(pool)  # type: ignore[arg-type]
    first, second = uuid.uuid4(), uuid.uuid4()
    pool.down = True
    assert await buffer.record(first, "clicked", "https://example.com/a") is None
    calls = pool.calls
    # Known to be away: the next hit does not wait for the database at all.
    assert await buffer.record(second, "opened", None) is None
    assert pool.calls == calls and len(buffer.waiting) == 2
    pool.down = False
    for _ in range(100):
        if not buffer.waiting:
            break
        await asyncio.sleep(0.01)
    assert [(a[0], a[1], a[2]) for a in pool.stored] == [
        (first, "clicked", "https://example.com/a"),
        (second, "opened", None),
    ]
    at_first, at_second = pool.stored[0][3], pool.stored[1][3]
    assert at_first <= at_second  # stored with the moment of the hit, not of the flush
    assert pool.stored[0][4] != pool.stored[1][4]  # each hit its own id
    # Back to the direct path.
    assert await buffer.record(first, "clicked", "https://example.com/b") is True
    await buffer.close()


async def test_an_unknown_message_is_reported_and_a_full_buffer_drops_the_oldest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = FlakyPool()
    buffer = HitBuffer(pool)  # type: ignore[arg-type]
    assert await buffer.record(uuid.UUID(int=0), "opened", None) is False
    monkeypatch.setattr(hits_module, "MAX_HITS", 3)
    pool.down = True
    ids = [uuid.uuid4() for _ in range(5)]
    for message_id in ids:
        await buffer.record(message_id, "opened", None)
    assert [h.message_id for h in buffer.waiting] == ids[2:] and buffer.dropped == 2
    await buffer.close()
