"""`keep_alive` (activities/retries.py) on its own, without a stack: the block always gets
out, however a renewal and the block's end (or its cancellation) meet, and once out
nothing renews or heartbeats any more.

The first test is the deterministic reproduction of the hung `send_email` (issue 24): on
Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives in the loop step in
which the awaited renewal finished (CPython gh-86296), so a renewal loop stopped by
cancelling it never stopped. Every test runs under `asyncio.wait_for(..., 5)` so that a
hang fails the test instead of the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from temporalio.testing import ActivityEnvironment

from activities.retries import keep_alive

T = TypeVar("T")
EVERY = 0.05
GUARD = 5.0


async def guarded(aw: Awaitable[T]) -> T:
    """`aw`, or a failed test (not a hung run) when it takes longer than GUARD seconds."""
    try:
        return await asyncio.wait_for(aw, GUARD)
    except TimeoutError:
        pytest.fail(f"keep_alive did not let the block out within {GUARD} s")


async def test_block_exits_when_its_end_meets_a_renewal() -> None:
    """The renewal wakes the block, which ends in the loop step in which the renewal
    finished: the block gets out, and no renewal follows."""
    for _ in range(3):
        await end_as_a_renewal_ends()


async def end_as_a_renewal_ends() -> None:
    calls = 0
    renewed = asyncio.Event()

    async def renew() -> None:
        nonlocal calls
        calls += 1
        renewed.set()

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            await renewed.wait()

    await guarded(block())
    assert calls == 1
    await asyncio.sleep(EVERY * 4)
    assert calls == 1, "the renewal loop went on after the block ended"


async def test_no_renewal_after_the_block_ends() -> None:
    calls = 0

    async def renew() -> None:
        nonlocal calls
        calls += 1

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            await asyncio.sleep(EVERY * 3.5)

    await guarded(block())
    assert calls >= 2
    before = calls
    await asyncio.sleep(EVERY * 5)
    assert calls == before


async def test_cancelled_block_stops_renewing_when_cancelled_as_a_renewal_ends() -> None:
    """The attempt is cancelled in the step in which a renewal finished: the cancellation
    reaches the caller, and the lease is not renewed any more."""
    for _ in range(3):
        await cancel_as_a_renewal_ends()


async def cancel_as_a_renewal_ends() -> None:
    calls = 0
    renewed = asyncio.Event()

    async def renew() -> None:
        nonlocal calls
        calls += 1
        renewed.set()

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(block())
    await renewed.wait()  # not through wait_for: its own task would add a loop step
    task.cancel()
    done, _ = await guarded(asyncio.wait([task]))
    assert task in done and task.cancelled()
    after = calls
    await asyncio.sleep(EVERY * 4)
    assert calls == after, "the renewal loop went on after the block was cancelled"


async def test_cancelled_block_stops_renewing() -> None:
    calls = 0

    async def renew() -> None:
        nonlocal calls
        calls += 1

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            await asyncio.Event().wait()

    task = asyncio.create_task(block())
    await asyncio.sleep(EVERY * 2.5)
    task.cancel()
    await guarded(asyncio.wait([task]))
    assert task.cancelled()
    after = calls
    await asyncio.sleep(EVERY * 4)
    assert calls == after


async def test_hung_renewal_does_not_hold_the_exit() -> None:
    """A renewal that never returns, not even when cancelled, keeps the block's exit
    waiting for a bounded time only; when it does return at last, the loop stops."""
    calls = 0
    started = asyncio.Event()
    release = asyncio.Event()

    async def renew() -> None:
        nonlocal calls
        calls += 1
        started.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                pass  # deaf to cancellation, as a wedged driver can be

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            await started.wait()

    loop = asyncio.get_running_loop()
    began = loop.time()
    await guarded(block())
    assert loop.time() - began < EVERY * 2 + 1.0
    release.set()
    await asyncio.sleep(EVERY * 4)
    assert calls == 1


async def test_slow_renewal_is_cut_and_the_next_one_follows() -> None:
    """A renewal gets at most `every` seconds; the loop goes on after it."""
    calls = 0

    async def renew() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # hangs, but honours cancellation

    async def block() -> None:
        async with keep_alive(EVERY, renew, heartbeat=False):
            while calls < 3:
                await asyncio.sleep(EVERY / 5)

    await guarded(block())
    assert calls == 3


async def test_heartbeats_stop_with_the_block() -> None:
    beats: list[tuple[Any, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    renewed = asyncio.Event()

    async def renew() -> None:
        renewed.set()

    async def work() -> None:
        async with keep_alive(EVERY, renew):
            await renewed.wait()

    await guarded(env.run(work))
    assert len(beats) == 1
    await asyncio.sleep(EVERY * 4)
    assert len(beats) == 1
