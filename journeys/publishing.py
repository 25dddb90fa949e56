"""Publishing a journey: every check, then the entry's schedule, then the new version.

Shared by `POST /journeys` and the console's publish form.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import asyncpg
from temporalio.client import Client

from journeys.definition import JourneyDefinition, Problem, definition_problems
from journeys.definition.graph import duplicate_action_warnings
from journeys.definition.journey import SelectionEntry
from journeys.entry_schedule import sync_entry_schedule
from journeys.references import field_warnings, reference_problems
from journeys.store.journeys import PublishedJourney, get_journey, publish
from journeys.templates import template_problems


class NotPublishable(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def _own_problems(defn: JourneyDefinition) -> list[Problem]:
    return definition_problems(defn) or template_problems(defn)


# The graph and template checks run in a process of their own: parsing a megabyte of
# templates takes jinja2 seconds (14 s for 30,000 expressions here), and on the event
# loop every other request, /healthz included, waited that long; in a thread the GIL
# still held it up to 0.7 s. One process: publishes queue there rather than take every
# core. Started at the first publish ("spawn": the parent runs threads).
_checker: ProcessPoolExecutor | None = None


def _exit_with_parent(parent: int) -> None:
    """In the checking process: end when the process that started it is gone. A pool's
    worker holds both ends of its task queue, so a parent killed outright (SIGKILL, a
    crash) would leave it waiting for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


async def _checked_apart(defn: JourneyDefinition) -> list[Problem]:
    global _checker
    for attempt in (1, 2):
        if _checker is None:
            _checker = ProcessPoolExecutor(
                max_workers=1,
                mp_context=get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(_checker, _own_problems, defn)
        except BrokenProcessPool:  # the process died (killed, out of memory): a new one
            _checker = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def publishing_problems(pool: asyncpg.Pool, defn: JourneyDefinition) -> list[Problem]:
    """Why the definition cannot be published (the graph first, then its templates,
    then what it names in the database); empty when it can."""
    return await _checked_apart(defn) or await reference_problems(pool, defn)


async def publish_warnings(pool: asyncpg.Pool, defn: JourneyDefinition) -> list[Problem]:
    """What is published all the same but likely wrong: fields nobody declared, steps
    repeating a link action."""
    return await field_warnings(pool, defn) + duplicate_action_warnings(defn)


async def publish_definition(
    pool: asyncpg.Pool, client: Client, task_queue: str, defn: JourneyDefinition
) -> tuple[PublishedJourney, list[Problem]]:
    """Store `defn` as the journey's next version, and its warnings (published all the
    same). A selection entry gets its Temporal Schedule (`entry/<key>`) first; another
    entry removes it. Raises `NotPublishable` with every problem."""
    problems = await publishing_problems(pool, defn)
    if problems:
        raise NotPublishable(problems)
    # Read before anything changes: a failure here leaves nothing half done.
    warnings = await publish_warnings(pool, defn)
    previous = await get_journey(pool, defn.key)
    if isinstance(defn.entry, SelectionEntry) or (
        previous and isinstance(previous.definition.entry, SelectionEntry)
    ):
        await sync_entry_schedule(client, task_queue, defn)
    return await publish(pool, defn), warnings
