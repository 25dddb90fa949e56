"""The OpenAPI document states what the API takes (issue 24): the formats its checks
enforce read the same in the document, every 422 is documented in its real shape, and a
rule JSON Schema cannot state is a 422 problem of a type that says so. The fault suite
runs schemathesis over the served document on a real stack; these say it of each rule."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any
from zoneinfo import available_timezones

import pytest
from pydantic import ValidationError

from api.errors import BEYOND_SCHEMA
from api.main import create_app
from api.routes.ops import RESET_TARGET
from journeys.contacts import ContactIn
from journeys.definition.common import parse_duration
from journeys.ops import check_reset_target
from journeys.recurring import SEND_TIME_PATTERN, SendTimes
from journeys.schema import (
    DURATION_OR_ZERO_SCHEMA,
    DURATION_SCHEMA,
    EMAIL_PATTERN,
    SIGNED_DURATION_SCHEMA,
    STORABLE_TEXT_PATTERN,
)
from journeys.settings import ApiSettings
from tests.conftest import Stack
from tests.helpers import create_contact


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = ApiSettings(
        api_key="k" * 32, database_url="postgresql://nowhere/none", secret="s" * 32
    )
    return create_app(settings).openapi()


def matches(pattern: str, text: str) -> bool:
    """As a JSON Schema validator reads `pattern` (ECMA-262: `$` is the end of the text;
    in Python it may come before a last newline)."""
    return re.search(re.sub(r"\$$", r"\\Z", pattern), text) is not None


def fits(schema: dict[str, Any], text: str) -> bool:
    """Whether `text` fits a string schema of patterns (and a `not` of one)."""
    if not matches(schema["pattern"], text):
        return False
    return "not" not in schema or not matches(schema["not"]["pattern"], text)


def durations() -> list[str]:
    """Every shape of an ISO duration (each part or not, in order), with a zero, a small
    and a six-digit number, and some that are no duration."""
    found = ["", "P", "PT", "P1", "1D", "P1DT", "PT1D", "P1S", "P1.5D", "P-1D", "P1D\n"]
    for date_parts in range(16):
        for time_parts in range(-1, 8):
            for n in ("0", "7", "999999", "0000010"):
                text = "P" + "".join(n + u for i, u in enumerate("YMWD") if date_parts >> i & 1)
                if time_parts >= 0:
                    text += "T" + "".join(n + u for i, u in enumerate("HMS") if time_parts >> i & 1)
                found.append(text)
    return found


def reads(text: str, *, zero: bool) -> bool:
    try:
        parse_duration(text, zero=zero)
    except ValueError:
        return False
    return True


def test_the_documented_durations_are_the_ones_read() -> None:
    """Each duration the document allows is read; each it refuses is refused, but for
    numbers of more than six digits and a trailing newline, which the API still reads."""
    for text in durations():
        longer = any(len(n) > 6 for n in re.findall(r"[0-9]+", text)) or text.endswith("\n")
        for schema, zero in ((DURATION_SCHEMA, False), (DURATION_OR_ZERO_SCHEMA, True)):
            if fits(schema, text) or not longer:
                assert fits(schema, text) == reads(text, zero=zero), (text, zero)
        if not longer:
            assert fits(SIGNED_DURATION_SCHEMA, f"-{text}") == reads(text, zero=False), text


@pytest.mark.parametrize(
    ("address", "taken"),
    [
        ("ann@example.com", True),
        ("jörg@exämple.de", True),
        ("a+b.c@sub.example.co.uk", True),
        ("ann@example", False),
        ("ann example@example.com", False),
        ("ann@example.com\n", False),
        ("ann\u2003@example.com", False),
        ("ann\x1c@example.com", False),
        ("<ann@example.com>", False),
        ("ann\x00@example.com", False),
        ("ann@@example.com", False),
    ],
)
def test_an_address_the_document_allows_is_taken(address: str, taken: bool) -> None:
    assert matches(EMAIL_PATTERN, address) == taken
    try:
        ContactIn(email=address)
    except ValidationError:
        assert not taken
    else:
        assert taken


def test_time_zones_are_the_iana_names(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["TimeZone"]["enum"] == sorted(available_timezones())
    zone = schemas["ContactIn"]["properties"]["time_zone"]
    assert {"$ref": "#/components/schemas/TimeZone"} in zone["anyOf"]
    assert ContactIn(time_zone="Europe/Amsterdam").time_zone == "Europe/Amsterdam"
    for name in ("Europe/Nowhere", "europe/amsterdam", "../etc/passwd", " UTC"):
        with pytest.raises(ValidationError, match="IANA"):
            ContactIn(time_zone=name)


def test_send_times_and_reset_targets_read_as_documented() -> None:
    for hour, minute in itertools.product(range(24), range(60)):
        text = f"{hour:02}:{minute:02}"
        try:
            SendTimes(frequency="daily", times=[text], start_date="2026-01-01")
        except ValidationError:
            taken = False
        else:
            taken = True
        assert matches(SEND_TIME_PATTERN, text) == taken, text
    for target in ("last-good", "first", "step:mail1", "step:", "step:a b", "last", "x"):
        try:
            check_reset_target(target)
        except ValueError:
            taken = False
        else:
            taken = True
        assert matches(RESET_TARGET, target) == taken, target


def test_every_422_is_documented_as_the_list_it_is(document: dict[str, Any]) -> None:
    """The 422s of /ops/* and the webhooks were documented with a string `detail`."""
    listed = {"$ref": "#/components/schemas/HTTPValidationError"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answer = operation["responses"].get("422")
            if answer is None:
                continue
            assert answer["content"]["application/json"]["schema"] == listed, (method, path)
            assert all(f"`{kind}`" in answer["description"] for kind in BEYOND_SCHEMA), path
    for path in ("/ops/failed", "/ops/stuck", "/ops/replay", "/ops/reset", "/webhooks/ses"):
        operation = next(iter(document["paths"][path].values()))
        assert "422" in operation["responses"], path


def test_stored_strings_hold_no_nul_and_keyed_maps_no_other_key(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    contact = schemas["ContactIn"]["properties"]
    assert {"type": "string", "pattern": STORABLE_TEXT_PATTERN}.items() <= (
        contact["first_name"]["anyOf"][0].items()
    )
    assert contact["fields"]["additionalProperties"] is False
    assert list(contact["fields"]["patternProperties"].values()) == [
        {"$ref": "#/components/schemas/StorableJson"}
    ]
    # The codec takes payloads as they are: not stored, NUL and all.
    assert "pattern" not in str(schemas["WirePayload"])
    assert "x-storable" not in str(document)


async def test_rules_beyond_the_schema_say_so(stack: Stack) -> None:
    """Each 422 for a rule JSON Schema cannot state names its kind; one it states does
    not."""
    http = stack.http
    contact = await create_contact(http)
    owner = await http.post("/contacts", json={"owner": "nobody-" + uuid.uuid4().hex[:6]})
    assert owner.json()["detail"][0]["type"] == "unknown_reference", owner.text
    phone = await http.post("/contacts", json={"phone": "12"})
    assert phone.json()["detail"][0]["type"] == "phone_number", phone.text
    cursor = await http.get(f"/contacts/{contact}/dossier", params={"cursor": "x"})
    assert cursor.json()["detail"][0]["type"] == "invalid_cursor", cursor.text
    record = await http.post("/records", json={"type": "nobody-declared-" + uuid.uuid4().hex[:6]})
    assert record.json()["detail"][0]["type"] == "unknown_reference", record.text
    cap = await http.put("/frequency-caps/sms", json={"max": 1, "per": "P400D"})
    assert cap.json()["detail"][0]["type"] == "out_of_range", cap.text
    members = await http.post("/projects/nowhere-project/members", json={"contact_ids": [contact]})
    assert members.status_code == 404, members.text
    stated = await http.post(
        "/events", json={"name": "x", "contact_id": contact, "external_id": "y"}
    )
    assert stated.status_code == 422 and stated.json()["detail"][0]["type"] == "value_error"


async def test_ops_since_before_the_calendar_lists_all(stack: Stack) -> None:
    """`since` longer ago than the calendar reaches was a 500 (OverflowError)."""
    failed = await stack.http.get("/ops/failed", params={"since": "P999999Y"})
    assert failed.status_code == 200, failed.text
    stuck = await stack.http.get("/ops/stuck", params={"older_than": "P999999Y"})
    assert stuck.status_code == 200 and stuck.json() == [], stuck.text
