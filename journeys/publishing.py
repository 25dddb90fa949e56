"""Publishing a journey: every check, then the entry's schedule, then the new version.

Shared by `POST /journeys` and the console's publish form.
"""

from __future__ import annotations

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


async def publishing_problems(pool: asyncpg.Pool, defn: JourneyDefinition) -> list[Problem]:
    """Why the definition cannot be published (the graph first, then its templates,
    then what it names in the database); empty when it can."""
    return (
        definition_problems(defn) or template_problems(defn) or await reference_problems(pool, defn)
    )


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
