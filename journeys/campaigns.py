"""A campaign action's mail is published as a journey of its own: one `send_email` step
named `mail`, then the end. Its messages then take the product's one send path and
carry that journey's key, so tracking, follow-ups (looked up in that journey version),
the dossier, `received` conditions and the action's results all work as for any
journey's mail. Nobody is enrolled in it: generation sends the step to each target."""

from __future__ import annotations

import hashlib
from typing import Any

# The one step of an action's mail journey.
MAIL_STEP = "mail"


def mail_journey_key(campaign_key: str, action_key: str) -> str:
    """Short and stable: both keys may be 64 characters, a journey key may not be longer."""
    digest = hashlib.sha256(f"{campaign_key}/{action_key}".encode()).hexdigest()[:16]
    return f"campaign-{digest}"


def mail_journey(
    campaign_key: str, campaign_name: str, action_key: str, message: dict[str, Any]
) -> dict[str, Any]:
    """The definition to publish for an action's `message` (the fields of a send_email
    step: subject, html, text, sender, attachments, follow-ups)."""
    return {
        "key": mail_journey_key(campaign_key, action_key),
        "name": f"{campaign_name}: {action_key}"[:200],
        "entry": {"type": "api"},
        "start": MAIL_STEP,
        "steps": {
            MAIL_STEP: {**message, "type": "send_email", "next": "end"},
            "end": {"type": "end"},
        },
    }
