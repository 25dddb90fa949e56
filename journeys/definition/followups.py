"""Follow-ups: small runs that hang on a message and fire on what happens to it.

A message step (`send_email`, `send_sms`) carries `follow_ups`. Each fires at
most once per message, on `sent`, `opened`, `clicked` (any link, or `link`
matched on scheme, host and path) or a `delivery_error` (of `kinds`), while the
message is listened to (`listen`, 30 days by default). It waits `wait` (0
minutes to years), checks `run_if` again, and then runs its own `steps` from
`start`: any step kinds, messages with follow-ups of their own included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field

from journeys.definition.common import (
    DeliveryErrorKind,
    IsoDurationOrZero,
    Key,
    Problem,
    StepId,
    Strict,
)
from journeys.definition.conditions import Condition

if TYPE_CHECKING:
    from journeys.definition.steps import Step

# How long after sending a message its follow-ups listen, unless the step says.
DEFAULT_LISTEN = "P30D"

Trigger = Literal["sent", "opened", "clicked", "delivery_error"]


class FollowUp(Strict):
    key: Key = Field(description="unique among the message's follow-ups")
    on: Trigger
    link: str | None = Field(
        default=None, description="clicked: only this link (scheme, host and path) counts"
    )
    kinds: list[DeliveryErrorKind] | None = Field(
        default=None, description="delivery_error: only these kinds count (all if absent)"
    )
    wait: IsoDurationOrZero = "PT0M"
    schedule_if: Condition | None = Field(
        default=None, description="checked when the trigger fires; not met: nothing happens"
    )
    run_if: Condition | None = Field(
        default=None, description="checked when the wait is over; not met: skipped"
    )
    start: StepId
    steps: dict[StepId, Step] = Field(
        min_length=1, description="step id -> step: the same kinds as the journey's `steps`"
    )

    def problems(self) -> list[Problem]:
        """Checks of the rule itself (its steps are checked as a graph elsewhere)."""
        problems: list[Problem] = []
        if self.link is not None and self.on != "clicked":
            problems.append((("link",), "link only applies to on: clicked"))
        if self.kinds is not None and self.on != "delivery_error":
            problems.append((("kinds",), "kinds only applies to on: delivery_error"))
        return problems


def same_link(clicked: str | None, wanted: str) -> bool:
    """Whether a clicked URL is the link `wanted`: the same scheme and host (in any
    case), port and path, with every query parameter `wanted` names (a product's
    `?id=1` is not `?id=2`); parameters the mail added (`?ref=…`) and the fragment do
    not count. A URL that cannot be read is no link."""
    if clicked is None:
        return False
    try:
        a, b = urlsplit(clicked), urlsplit(wanted)
        where = (a.scheme.lower(), a.hostname or "", a.port, a.path or "/")
        if where != (b.scheme.lower(), b.hostname or "", b.port, b.path or "/"):
            return False
    except ValueError:  # a malformed port or IPv6 host
        return False
    given = parse_qsl(a.query, keep_blank_values=True)
    return all(pair in given for pair in parse_qsl(b.query, keep_blank_values=True))
