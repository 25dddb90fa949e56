"""Contacts (profiles) in PostgreSQL: shared by the API and the activities."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ConfigDict, Field, computed_field

from journeys.definition import (
    CONTACT_COLUMNS,
    FIELD_NAME_PATTERN,
    KEY_PATTERN,
    READ_ONLY_FIELDS,
)
from journeys.text import StorableModel

_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


def _check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.match(value):
        raise ValueError("not an e-mail address")
    return value


def _check_time_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Amsterdam"
            ) from None
    return value


FreeFieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]


class ContactIn(StorableModel):
    """A contact as a client sends it; `external_id` makes the call an upsert."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    email: Annotated[str | None, AfterValidator(_check_email)] = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    time_zone: Annotated[
        str | None, Field(min_length=1, max_length=64), AfterValidator(_check_time_zone)
    ] = None
    owner: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="the user key of the account owner"
    )
    service_owner: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="the user key of the service owner"
    )
    fields: dict[FreeFieldName, Any] = Field(default_factory=dict)


class Contact(ContactIn):
    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    unsubscribed_at: datetime | None = None
    bounced: bool = Field(
        default=False,
        description="the e-mail address hard-bounced or complained: no mail goes to it",
    )
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unsubscribed(self) -> bool:
        """Unsubscribed from marketing messages (a link, or the one-click header)."""
        return self.unsubscribed_at is not None


def profile(contact: Contact) -> dict[str, Any]:
    """Columns and free fields in one mapping, as templates and conditions see them."""
    merged: dict[str, Any] = dict(contact.fields)
    merged.update({col: getattr(contact, col) for col in (*CONTACT_COLUMNS, *READ_ONLY_FIELDS)})
    merged["id"] = str(contact.id)
    return merged
