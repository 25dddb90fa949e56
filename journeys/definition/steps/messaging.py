"""Steps that send a message to the participant."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from journeys.definition.common import IsoDuration, Problem, StepBase, StepId, step_problem
from journeys.definition.followups import FollowUp
from journeys.definition.limits import (
    MAX_SUBJECT_CHARS,
    MAX_TEMPLATE_CHARS,
    SMS_MAX_CHARS,
    SMS_MAX_SEGMENTS,
)
from journeys.definition.steps.profile import (
    AddToProject,
    AddToSelection,
    RemoveFromProject,
    RemoveFromSelection,
    UpdateContact,
)


# A link action is one of these step kinds without `next`: they run in order on a click.
class UpdateContactAction(UpdateContact):
    next: StepId | None = None  # type: ignore[assignment]


class AddToSelectionAction(AddToSelection):
    next: StepId | None = None  # type: ignore[assignment]


class RemoveFromSelectionAction(RemoveFromSelection):
    next: StepId | None = None  # type: ignore[assignment]


class AddToProjectAction(AddToProject):
    next: StepId | None = None  # type: ignore[assignment]


class RemoveFromProjectAction(RemoveFromProject):
    next: StepId | None = None  # type: ignore[assignment]


LinkAction = Annotated[
    UpdateContactAction
    | AddToSelectionAction
    | RemoveFromSelectionAction
    | AddToProjectAction
    | RemoveFromProjectAction,
    Field(discriminator="type"),
]
WebUrl = Annotated[str, Field(pattern=r"^https?://[^\s\x00]+$", max_length=2000)]
# The follow-ups that carry out link actions are named link-1, link-2, … in the order
# of the links.
LINK_RULE_PREFIX = "link-"


class MessageStep(StepBase):
    """What every message to the participant has: follow-ups, link actions, and how
    long they listen."""

    follow_ups: list[FollowUp] | None = Field(
        default=None, max_length=50, description="runs that fire on what happens to the message"
    )
    link_actions: dict[WebUrl, list[LinkAction]] | None = Field(
        default=None,
        max_length=50,
        description="profile and membership changes made when the link is clicked (once)",
    )
    listen: IsoDuration | None = Field(
        default=None, description="how long after sending follow-ups fire (P30D if absent)"
    )
    # None rather than False when not given: a definition saved without it stays
    # readable by the code before it (models forbid fields they do not know).
    transactional: bool | None = Field(
        default=None,
        description="a code, a receipt: sent at once in the journey's quiet_hours, and"
        " outside the frequency caps (neither held back nor counted)",
    )

    def rules(self) -> list[FollowUp]:
        """The follow-ups, and one per link with actions: fired on a click on that link,
        at once, doing the actions in order."""
        rules = list(self.follow_ups or [])
        for i, (url, actions) in enumerate((self.link_actions or {}).items(), 1):
            ids = [f"action{j}" for j in range(1, len(actions) + 1)]
            steps: dict[str, Any] = {
                sid: {**action.model_dump(mode="json", exclude_none=True), "next": after}
                for sid, action, after in zip(ids, actions, [*ids[1:], "end"], strict=True)
            }
            steps["end"] = {"type": "end"}
            rules.append(
                FollowUp.model_validate(
                    {
                        "key": f"{LINK_RULE_PREFIX}{i}",
                        "on": "clicked",
                        "link": url,
                        "start": ids[0],
                        "steps": steps,
                    }
                )
            )
        return rules

    def problems(self, sid: str, steps: dict[str, Any]) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for url, actions in (self.link_actions or {}).items():
            if not actions:
                problems.append(step_problem(sid, ("link_actions", url), "no actions"))
        for i, rule in enumerate(self.follow_ups or []):
            if rule.key.startswith(LINK_RULE_PREFIX):
                problems.append(
                    step_problem(
                        sid,
                        ("follow_ups", i, "key"),
                        f"follow-up keys starting with '{LINK_RULE_PREFIX}' name link actions",
                    )
                )
            if rule.key in seen:
                problems.append(
                    step_problem(sid, ("follow_ups", i, "key"), f"follow-up key '{rule.key}' twice")
                )
            seen.add(rule.key)
            problems += [
                step_problem(sid, ("follow_ups", i, *loc), f"follow-up '{rule.key}': {msg}")
                for loc, msg in rule.problems()
            ]
        return problems


class SendEmail(MessageStep):
    """Render the templates with the contact's fields and send one tracked e-mail."""

    templates: ClassVar[dict[str, bool]] = {"subject": False, "html": True, "text": False}

    type: Literal["send_email"]
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT_CHARS)
    html: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    text: str | None = Field(
        default=None,
        max_length=MAX_TEMPLATE_CHARS,
        description="plain-text part; derived from html if absent",
    )
    sender: str | None = Field(
        default=None, description="From address; the server default if absent"
    )
    attachments: list[str] | None = Field(
        default=None, max_length=20, description="file ids (`POST /files`), 25 MB together"
    )
    next: StepId


class SendSms(MessageStep):
    """Render the text with the contact's fields and send one SMS to the contact's phone."""

    templates: ClassVar[dict[str, bool]] = {"text": False}

    type: Literal["send_sms"]
    sender: str | None = Field(
        default=None,
        pattern=r"^(\+[1-9][0-9]{6,14}|[A-Za-z0-9][A-Za-z0-9 ]{0,10})$",
        description="a number (+31…) or up to 11 letters and digits; the server default if absent",
    )
    text: str = Field(min_length=1, max_length=SMS_MAX_CHARS)
    max_segments: int | None = Field(
        default=None,
        ge=1,
        le=SMS_MAX_SEGMENTS,
        description=f"at most this many parts once filled in ({SMS_MAX_SEGMENTS} if absent): "
        "a longer text is not sent, and the participant goes on",
    )
    if_no_phone: Literal["skip", "exit"] = Field(
        default="skip", description="without a (valid) phone: skip the step, or leave the journey"
    )
    next: StepId


class Notify(StepBase):
    """An internal e-mail to a colleague (a user key) or an address, about the
    participant: contact variables, no tracking, no unsubscribe link."""

    templates: ClassVar[dict[str, bool]] = {"subject": False, "body": False}

    type: Literal["notify"]
    to: str = Field(
        min_length=1,
        max_length=320,
        pattern=r"^([a-z0-9][a-z0-9_-]{0,63}|[^@\s<>\"\x00]+@[^@\s<>\"\x00]+\.[^@\s<>\"\x00]+)$",
        description="a user key or an e-mail address",
    )
    subject: str = Field(min_length=1, max_length=MAX_SUBJECT_CHARS)
    body: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    next: StepId

    @property
    def to_user(self) -> str | None:
        return None if "@" in self.to else self.to
