"""Contacts (profiles) in PostgreSQL: shared by the API and the activities."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    computed_field,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from journeys.definition import (
    CONTACT_COLUMNS,
    FIELD_NAME_PATTERN,
    KEY_PATTERN,
    READ_ONLY_FIELDS,
)
from journeys.schema import EMAIL_PATTERN, Schema
from journeys.text import StorableModel, text_problem

_EMAIL = re.compile(EMAIL_PATTERN)


def _check_email(value: str | None) -> str | None:
    if value is None:
        return value
    if (problem := text_problem(value)) is not None:  # NUL: said as for any text
        raise ValueError(problem)
    # fullmatch: `$` alone lets a trailing newline through, JSON Schema's does not.
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


@cache
def time_zone_names() -> frozenset[str]:
    """The IANA time zone names this installation knows (the system's or tzdata's)."""
    return frozenset(available_timezones())


def _check_time_zone(value: str | None) -> str | None:
    if value is not None and value not in time_zone_names():
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Amsterdam")
    return value


class _TimeZoneSchema:
    """A time zone is one of the IANA names: one schema component, `TimeZone`, lists
    them (600 names, not repeated at every field)."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            _check_time_zone, core_schema.str_schema(), ref="TimeZone"
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        ref = handler(schema)
        handler.resolve_ref_schema(ref).update(
            enum=sorted(time_zone_names()),
            description="an IANA time zone name, e.g. Europe/Amsterdam",
        )
        return ref


# A time zone by its IANA name; and an e-mail address as `_check_email` takes it.
TimeZone = Annotated[str, _TimeZoneSchema]
Email = Annotated[str, AfterValidator(_check_email), Schema({"pattern": EMAIL_PATTERN})]

FreeFieldName = Annotated[str, Field(pattern=FIELD_NAME_PATTERN)]


class ContactIn(StorableModel):
    """A contact as a client sends it; `external_id` makes the call an upsert."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    email: Email | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    time_zone: TimeZone | None = None
    owner: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="the user key of the account owner"
    )
    service_owner: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="the user key of the service owner"
    )
    fields: dict[FreeFieldName, Any] = Field(default_factory=dict)


class Contact(ContactIn):
    model_config = ConfigDict(extra="ignore")

    # As stored: a contact taken before today's checks must still load (an address with
    # a trailing newline, a zone such as posix/Europe/Amsterdam).
    email: str | None = None
    time_zone: str | None = None
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
