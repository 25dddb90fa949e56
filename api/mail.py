"""Checking a message given to a campaign action or a recurring send, as the journey it
is published as (`journeys.message_journeys`); problems are placed under `message`."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import ValidationError

from api.errors import unprocessable, unprocessable_typed
from journeys.definition import JourneyDefinition
from journeys.definition.limits import size_problems
from journeys.message_journeys import MAIL_STEP, message_journey
from journeys.publishing import publishing_problems
from journeys.schema import DEFINITION, TOO_LARGE


async def checked_message_journey(
    pool: asyncpg.Pool, key: str, name: str, message: dict[str, Any]
) -> JourneyDefinition:
    """The message's journey, checked as a journey's send_email step is (422 when not)."""
    raw = message_journey(key, name, message)
    step_loc = ("steps", MAIL_STEP)

    def placed(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
        if loc[:2] != step_loc:
            return ("message", *loc)
        rest = loc[len(step_loc) :]
        # Validation errors name the step union's member first: not a place in `message`.
        return ("message", *(rest[1:] if rest[:1] == ("send_email",) else rest))

    if size := size_problems(raw):
        raise unprocessable([(placed(tuple(loc)), msg) for loc, msg in size], kind=TOO_LARGE)
    try:
        definition = JourneyDefinition.model_validate(raw)
    except ValidationError as exc:
        raise unprocessable_typed(
            (placed(tuple(e["loc"])), e["msg"], e["type"]) for e in exc.errors(include_url=False)
        ) from None
    problems = await publishing_problems(pool, definition)
    if problems:
        raise unprocessable([(placed(tuple(loc)), msg) for loc, msg in problems], kind=DEFINITION)
    return definition
