"""The console's counts cache: fresh values as they are, stale ones at once with a
recount behind them, too old or failing ones not passed off as current."""

from __future__ import annotations

import asyncio

import pytest

from api.console.freshness import Freshness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A count that answers 1, 2, 3, ... and can be held or made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("visibility is down")
        return self.calls


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fresh_stale_and_too_old() -> None:
    clock, count = Clock(), Counter()
    fresh = Freshness(fresh=2, stale=60, clock=clock)
    assert (await fresh.get("k", count))[0] == 1
    clock.now += 1  # fresh: no new count
    assert (await fresh.get("k", count))[0] == 1 and count.calls == 1
    clock.now += 5  # stale: the old value at once, a recount behind it
    value, _ = await fresh.get("k", count)
    assert value == 1
    await settle()
    assert count.calls == 2 and (await fresh.get("k", count))[0] == 2
    clock.now += 120  # too old to show: the page waits for the count
    assert (await fresh.get("k", count))[0] == 3


async def test_one_count_at_a_time_for_everyone() -> None:
    clock, count = Clock(), Counter()
    fresh = Freshness(fresh=2, stale=60, clock=clock)
    count.gate.clear()
    pages = [asyncio.ensure_future(fresh.get("k", count)) for _ in range(5)]
    await settle()
    assert count.calls == 1
    count.gate.set()
    assert [value for value, _ in await asyncio.gather(*pages)] == [1] * 5
    # A page that goes away does not cancel the count the others wait for.
    count.gate.clear()
    clock.now += 100
    first = asyncio.ensure_future(fresh.get("k", count))
    second = asyncio.ensure_future(fresh.get("k", count))
    await settle()
    first.cancel()
    count.gate.set()
    assert (await second)[0] == 2


async def test_a_failing_count_keeps_the_last_value_until_it_is_too_old() -> None:
    clock, count = Clock(), Counter()
    fresh = Freshness(fresh=2, stale=60, clock=clock)
    await fresh.get("k", count)
    count.fail = True
    clock.now += 10
    assert (await fresh.get("k", count))[0] == 1  # stale, shown; the recount fails
    await settle()
    assert (await fresh.get("k", count))[0] == 1
    clock.now += 100
    with pytest.raises(ConnectionError):
        await fresh.get("k", count)
    with pytest.raises(ConnectionError):  # never counted: nothing to show
        await fresh.get("other", count)
    count.fail = False
    assert (await fresh.get("other", count))[0] > 0


async def test_a_page_waits_only_so_long_for_a_count() -> None:
    clock, count = Clock(), Counter()
    fresh = Freshness(fresh=2, stale=60, clock=clock)
    count.gate.clear()
    assert await fresh.get_within("k", count, 0.01) is None  # answers without it
    count.gate.set()
    await settle()
    found = await fresh.get_within("k", count, 0.01)  # the count went on meanwhile
    assert found is not None and found[0] == 1 and count.calls == 1
