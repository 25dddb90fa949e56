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
    attachments: list[str] | None = Field(
        default=None, max_length=20, description="file ids (`POST /files`), 25 MB together"
    )
    next: StepId


class SendSms(StepBase):
    """Render the text with the contact's fields and send one SMS to the contact's phone."""

    templates: ClassVar[dict[str, bool]] = {"text": False}

    type: Literal["send_sms"]
    sender: str | None = Field(
        default=None,
        pattern=r"^(\+[1-9][0-9]{6,14}|[A-Za-z0-9][A-Za-z0-9 ]{0,10})$",
        description="a number (+31…) or up to 11 letters and digits; the server default if absent",
    )
    text: str = Field(min_length=1, max_length=1600)
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
        pattern=r"^([a-z0-9][a-z0-9_-]{0,63}|[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+)$",
        description="a user key or an e-mail address",
    )
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)
    next: StepId

    @property
    def to_user(self) -> str | None:
        return None if "@" in self.to else self.to
