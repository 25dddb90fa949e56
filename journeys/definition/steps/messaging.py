"""Steps that send a message to the participant."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from journeys.definition.common import StepBase, StepId


class SendEmail(StepBase):
    """Render the templates with the contact's fields and send one tracked e-mail."""

    templates: ClassVar[dict[str, bool]] = {"subject": False, "html": True, "text": False}

    type: Literal["send_email"]
    subject: str = Field(min_length=1)
    html: str = Field(min_length=1)
    text: str | None = Field(
        default=None, description="plain-text part; derived from html if absent"
    )
    sender: str | None = Field(
        default=None, description="From address; the server default if absent"
    )
    next: StepId
