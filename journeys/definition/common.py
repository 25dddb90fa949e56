"""Building blocks of the definition format: keys, ids, durations, the step base.

Side-effect free: the workflow sandbox imports the whole `journeys.definition`
package.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, ConfigDict, Field

from journeys.schema import DURATION_OR_ZERO_SCHEMA, DURATION_SCHEMA, Schema
from journeys.text import StorableModel

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
STEP_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

# Profile columns a journey may read and write; anything else is a free field.
CONTACT_COLUMNS = ("email", "phone", "first_name", "last_name", "time_zone")
# Fields that identify a contact and are never written by a journey.
READ_ONLY_FIELDS = (
    "id",
    "external_id",
    "created_at",
    "updated_at",
    "unsubscribed_at",
    # Set by an unsubscribe, and by a hard bounce or complaint on the contact's address.
    "unsubscribed",
    "bounced",
)

# What a provider or the send itself reports about a message that did not arrive.
DeliveryErrorKind = Literal["soft_bounce", "hard_bounce", "complaint", "rejected"]
# What can happen to a message after it was sent (the `event` of a wait or condition).
MessageEventName = Literal["opened", "clicked", "delivery_error", "unsubscribed"]

DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$",
    re.ASCII,
)
# A calendar year or month has no fixed length; waits use these fixed lengths
# so that a duration means the same thing in every workflow replay.
_UNIT_SECONDS = {
    "years": 365 * 86400,
    "months": 30 * 86400,
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


def parse_duration(text: str, *, zero: bool = False) -> timedelta:
    """An ISO-8601 duration such as `PT10M`, `P3D` or `P2Y` as a timedelta; `PT0M`
    only where `zero` says it may be."""
    match = DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as PT10M, P3D or P2Y")
    seconds = sum(int(v) * _UNIT_SECONDS[k] for k, v in match.groupdict().items() if v)
    if seconds <= 0 and not zero:
        raise ValueError(f"duration {text!r} must be longer than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is longer than any calendar") from None


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def _check_duration_or_zero(text: str) -> str:
    parse_duration(text, zero=True)
    return text


# A local wall time, hours and minutes (in the contact's time zone where it is used).
LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:00"])]
IsoDuration = Annotated[
    str,
    AfterValidator(_check_duration),
    Schema(DURATION_SCHEMA),
    Field(description="ISO-8601 duration, e.g. PT10M, P3D, P2Y", examples=["P3D"]),
]
# A wait that may be none at all (a follow-up's PT0M).
IsoDurationOrZero = Annotated[
    str,
    AfterValidator(_check_duration_or_zero),
    Schema(DURATION_OR_ZERO_SCHEMA),
    Field(description="ISO-8601 duration; PT0M for none", examples=["PT0M", "P2D"]),
]
StepId = Annotated[str, Field(pattern=STEP_ID_PATTERN)]
FieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]
Key = Annotated[str, Field(pattern=KEY_PATTERN)]

Location = tuple[str | int, ...]
Problem = tuple[Location, str]


class Edge(NamedTuple):
    """An outgoing edge: its label (in messages and graphs), target and location."""

    label: str
    target: str
    loc: Location


class Strict(StorableModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class StepBase(Strict):
    """What every step kind has and says about itself."""

    # Whether the participant sleeps in this step; a loop must pass through one.
    waits: ClassVar[bool] = False
    # Fields holding templates, and whether each renders as HTML.
    templates: ClassVar[dict[str, bool]] = {}

    title: str | None = Field(default=None, description="shown in the web UI and graphs")

    def edges(self) -> list[Edge]:
        """The outgoing edges; most kinds have one, `next`."""
        target = getattr(self, "next", None)
        return [] if target is None else [Edge("next", target, ("next",))]

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        """Checks that need the rest of the journey (references to other steps)."""
        return []


def step_problem(sid: str, loc: Location, message: str) -> Problem:
    return (("steps", sid, *loc), f"step '{sid}': {message}")


def message_ref_problems(
    sid: str, field: str, ref: str | None, steps: dict[str, Any], kinds: tuple[str, ...]
) -> list[Problem]:
    """A reference to a message step of one of `kinds` that is not one."""
    if ref is None or getattr(steps.get(ref), "type", None) in kinds:
        return []
    return [step_problem(sid, (field,), f"{field} '{ref}' is not a {' or '.join(kinds)} step")]
