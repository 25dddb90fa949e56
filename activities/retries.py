"""Outages inside activities: one log line per attempt, then Temporal retries.

An activity that meets an unavailable backend fails its attempt and Temporal
retries it (for as long as the outage lasts, see `workflows.steps`). The SDK
logs every failed attempt with its traceback: with 300 mails waiting for an
SMTP server that is down, that was about 86,000 lines a minute. An outage is
expected, not a bug, so it leaves as a *benign* ApplicationError (logged by
the SDK at debug level) after one line of our own that names the backend and
the reason. Anything else keeps its traceback. An outage of a backend the process
watches (the worker's PostgreSQL, which every activity meets at once) is one line
when it begins and one when it ends instead (`journeys.outages.OutageLog`).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from journeys.outages import outage_log, outage_of
from journeys.text import ADDRESS

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


# A mail server's refusal often quotes the recipient ("450 <ann@example.com>: greylisted"):
# `journeys.text.ADDRESS`, the rule bounce notices' details follow too.
_ADDRESS = ADDRESS


# An SMS provider's refusal quotes the number ("The 'To' number +31 6 1234 5678 is not
# valid"): seven digits or more, with the separators people write. Error codes (21211)
# and statuses (503) are shorter.
_PHONE = re.compile(r"\+?\d(?:[\s().-]*\d){6,}")


def redacted(text: str, *, phones: bool = False) -> str:
    """`text` without e-mail addresses (and with `phones`, phone numbers: for what an SMS
    provider says; elsewhere a run of digits is more often an IP address or a date):
    reasons go to logs, Temporal's history and the message log."""
    text = _ADDRESS.sub("<address>", text)
    return (_PHONE.sub("<phone>", text) if phones else text).rstrip(": ")


def retry_later(reason: str, delay: timedelta | None = None) -> ApplicationError:
    """A retryable failure that is expected (an outage, a lease held by another attempt)."""
    return ApplicationError(
        reason, type="Unavailable", category=ApplicationErrorCategory.BENIGN, next_retry_delay=delay
    )


def give_up(reason: str) -> ApplicationError:
    """A failure no retry can fix (a missing row, a bad selection): the workflow is told."""
    return ApplicationError(reason, non_retryable=True)


def quiet_outages(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn an outage met by the activity into one log line and a benign retry."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            backend = outage_of(exc)
            if backend is None:
                raise
            info = activity.info()
            reason = f"{backend} is unavailable: {type(exc).__name__}: {redacted(str(exc))}"
            fields = {
                "activity": info.activity_type,
                "attempt": info.attempt,
                "workflow_id": info.workflow_id,
            }
            # A watched backend (the worker's PostgreSQL): one line per outage instead.
            if not outage_log.failed(backend, "activity.retry", reason, **fields):
                log.warning("activity.retry", reason=reason, **fields)
            raise retry_later(reason) from None

    return wrapper


# Renewal loops still running after their block gave up waiting for them (a renewal
# deaf to cancellation): kept here so they are not garbage-collected half-way; each
# stops by itself, at its stop flag, once its renewal returns.
_lingering: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def keep_alive(
    every: float, renew: Callable[[], Awaitable[Any]] | None = None, *, heartbeat: bool = True
) -> AsyncIterator[None]:
    """Heartbeat (and `renew`) every `every` seconds while the block runs.

    Without `heartbeat` only the renewal: for a block inside an activity that
    heartbeats its own progress (details an empty heartbeat would wipe out).

    Nothing happens for a block shorter than `every`: a typical send finishes
    well within it, so it costs no heartbeat call and no write. A renewal gets at
    most `every` seconds, so a hung database cannot hold back the next heartbeat,
    and the block's end waits at most `every` seconds for the loop to stop.

    The loop stops at a flag, not by a cancellation alone: on Python 3.11
    `asyncio.wait_for` swallows a cancellation that arrives in the loop step in
    which the awaited call finished (CPython gh-86296), and a renewal loop stopped
    only by `task.cancel()` then went on renewing the lease for ever, with the
    block's exit waiting for it (a `send_email` attempt hung after a successful
    send until its start-to-close timeout). So no `wait_for` here either:
    `asyncio.timeout` runs the renewal in this task, and its expiry cannot eat a
    cancellation from outside.
    """
    stop = asyncio.Event()

    async def beat() -> None:
        while True:
            try:
                async with asyncio.timeout(every):
                    await stop.wait()
            except TimeoutError:
                pass
            if stop.is_set():
                return
            if heartbeat:
                activity.heartbeat()
            if renew is not None:
                try:
                    async with asyncio.timeout(every):
                        await renew()
                except Exception as exc:  # a lost renewal only lets the lease run out
                    why = f"{type(exc).__name__}: {redacted(str(exc))}"
                    if not outage_log.failed(outage_of(exc), "activity.renew_failed", why):
                        log.warning("activity.renew_failed", error=type(exc).__name__)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        stop.set()  # what ends the loop even where a cancellation gets swallowed
        task.cancel()  # what cuts a renewal in flight short
        # Bounded, and without swallowing a cancellation of our own (asyncio.wait
        # raises it, and uses no wait_for).
        await asyncio.wait([task], timeout=every)
        if not task.done():
            log.warning("activity.renew_lingering", waited=every)
            _lingering.add(task)
            task.add_done_callback(_lingering.discard)


async def persist(write: Callable[[], Awaitable[Any]], *, what: str, budget: float = 120.0) -> None:
    """Run `write` until it succeeds, retrying outages in place for up to `budget` s.

    For the write that records what already happened outside (the mail server
    accepted the message): failing the activity instead would make its retry do
    it again. For the same reason a cancellation (the worker shutting down, the
    attempt timed out) waits for the write to finish before it takes effect.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget

    async def until_written() -> None:
        delay = 0.2
        while True:
            try:
                await write()
                return
            except Exception as exc:
                backend = outage_of(exc)
                if backend is None or loop.time() >= deadline:
                    raise
                why = f"{type(exc).__name__}: {redacted(str(exc))}"
                if not outage_log.failed(backend, "activity.persist_retry", why, what=what):
                    log.warning("activity.persist_retry", what=what, error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    writing = asyncio.ensure_future(until_written())
    try:
        await asyncio.shield(writing)
    except asyncio.CancelledError:
        await asyncio.wait([writing])
        raise


async def keep_heartbeating(details: Callable[[], BaseModel], every: float = 5.0) -> None:
    """Heartbeat `details()` every `every` seconds, until cancelled: a page of a bulk
    activity takes seconds, and a retry resumes from the progress last heartbeated."""
    while True:
        activity.heartbeat(details().model_dump(mode="json"))
        await asyncio.sleep(every)


async def finish_pages(pages: list[asyncio.Task[Any]]) -> None:
    """Pages still running when their activity stops: cancelled with it when the
    activity is cancelled; otherwise (another page failed) waited for, because a page
    stopped in the middle of an SMTP transaction may have delivered a mail it did not
    record, which its retry sends again."""
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        for page in pages:
            page.cancel()
    await asyncio.gather(*pages, return_exceptions=True)
