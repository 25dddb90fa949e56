"""A mail sent outside any participant's journey (a campaign action's, a recurring
send's) is published as a journey of its own: one `send_email` step named `mail`,
then the end. Its messages then take the product's one send path and carry that
journey's key, so tracking, follow-ups (looked up in that journey version), the
dossier, `received` conditions and the results all work as for any journey's mail.
Nobody is enrolled in it: the bulk run sends the step to each recipient."""

from __future__ import annotations

import hashlib
from typing import Any

from journeys.definition import SendEmail
from journeys.models import SendEmailInput
from journeys.store.journeys import PublishedJourney

# The one step of a message journey.
MAIL_STEP = "mail"


def mail_journey_key(campaign_key: str, action_key: str) -> str:
    """A campaign action's. Short and stable: both keys may be 64 characters, a journey
    key may not be longer."""
    digest = hashlib.sha256(f"{campaign_key}/{action_key}".encode()).hexdigest()[:16]
    return f"campaign-{digest}"


def recurring_journey_key(key: str) -> str:
    """A recurring send's (its key may be 64 characters too)."""
    return f"recurring-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def message_journey(key: str, name: str, message: dict[str, Any]) -> dict[str, Any]:
    """The definition to publish for `message` (the fields of a send_email step:
    subject, html, text, sender, attachments, follow-ups)."""
    return {
        "key": key,
        "name": name[:200],
        "entry": {"type": "api"},
        "start": MAIL_STEP,
        "steps": {
            MAIL_STEP: {**message, "type": "send_email", "next": "end"},
            "end": {"type": "end"},
        },
    }


def mail_step(journey: PublishedJourney) -> SendEmail | None:
    """The message journey's mail step (None: not a message journey)."""
    step = journey.definition.steps.get(MAIL_STEP)
    return step if isinstance(step, SendEmail) else None


def mail_input(
    journey: PublishedJourney,
    step: SendEmail,
    *,
    idempotency_key: str,
    workflow_id: str,
    contact_id: str,
    record_id: str | None = None,
    recurring_key: str | None = None,
) -> SendEmailInput:
    """The send of the journey's mail to one recipient, through the one send path."""
    return SendEmailInput(
        idempotency_key=idempotency_key,
        workflow_id=workflow_id,
        journey_key=journey.key,
        version=journey.version,
        contact_id=contact_id,
        step=MAIL_STEP,
        follow_up_path=[MAIL_STEP] if step.follow_ups else None,
        record_id=record_id,
        recurring_key=recurring_key,
        subject=step.subject,
        html=step.html,
        text=step.text,
        sender=step.sender,
        attachments=list(step.attachments or []),
        # A service mail (`transactional`) does not count towards the frequency caps.
        transactional=bool(step.transactional),
    )
