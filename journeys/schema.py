"""The rules validators enforce, stated as JSON Schema where JSON Schema can state them.

The OpenAPI document (and `GET /journeys/schema`) is built from the models; a rule a
validator function enforces is invisible there unless it is stated here too. `Schema`
adds keywords to the JSON Schema of the type it annotates; the patterns below are read
the same by Python's `re` (the API's checks) and by ECMA-262 (JSON Schema validators).

A rule JSON Schema cannot state (a reference to something stored, two fields compared,
a computed length) raises a problem of one of the `type`s below, so that a client, and
the schemathesis run of the fault suite, can tell it from a broken stated rule.

Side-effect free: the workflow sandbox imports it through `journeys.definition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Problem types (a 422's `type`) of rules beyond JSON Schema; `api.errors.BEYOND_SCHEMA`
# says what each means.
UNKNOWN_REFERENCE = "unknown_reference"
STORED_STATE = "stored_state"
DEFINITION = "definition"
CROSS_FIELD = "cross_field"
OUT_OF_RANGE = "out_of_range"
INVALID_CURSOR = "invalid_cursor"
PHONE_NUMBER = "phone_number"
VISIBILITY_QUERY = "visibility_query"
PAYLOAD = "payload"
TOO_LARGE = "too_large"


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity, as Annotated needs
class Schema:
    """`Annotated[str, Schema({"pattern": ...})]`: the keywords join the type's own JSON
    Schema (inside a union too), and validate nothing."""

    keywords: dict[str, Any]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords)
        return schema


# Python's `\s` in a str pattern (what str.isspace() says), spelled out: ECMA-262's `\s`
# is another set.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# What the API takes as an e-mail address: something, @, a domain with a dot; no
# whitespace, no <, > or ", and no NUL (PostgreSQL cannot store it).
_ADDRESS_PART = rf'[^@{WHITESPACE}<>"\x00]+'
EMAIL_PATTERN = rf"^{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}$"

# A string PostgreSQL can store: no NUL (lone surrogates are not Unicode, and a JSON
# Schema string has none).
STORABLE_TEXT_PATTERN = r"^[^\x00]*$"


def _duration_pattern(digits: int) -> str:
    """ISO-8601 durations as `journeys.definition.common.DURATION` reads them (years,
    months, weeks, days, then T hours, minutes, seconds; at least one part; whole
    numbers), each number at most `digits` digits."""
    n = f"[0-9]{{1,{digits}}}"
    date = f"(?:{n}Y(?:{n}M)?(?:{n}W)?(?:{n}D)?|{n}M(?:{n}W)?(?:{n}D)?|{n}W(?:{n}D)?|{n}D)"
    time = f"T(?:{n}H(?:{n}M)?(?:{n}S)?|{n}M(?:{n}S)?|{n}S)"
    return f"P(?:{date}(?:{time})?|{time})"


# Six digits a number: no sum of such parts overflows (999,999 years is 365 million
# days; Python's calendar ends at 999,999,999 days). Longer numbers that do not overflow
# are still read; the document promises these.
DURATION_DIGITS = 6
_DURATION = _duration_pattern(DURATION_DIGITS)
_ZERO = "P(?:0+[YMWD])*(?:T(?:0+[HMS])*)?"
DURATION_OR_ZERO_SCHEMA: dict[str, Any] = {"pattern": f"^{_DURATION}$"}
DURATION_SCHEMA: dict[str, Any] = {"pattern": f"^{_DURATION}$", "not": {"pattern": f"^{_ZERO}$"}}
SIGNED_DURATION_SCHEMA: dict[str, Any] = {
    "pattern": f"^-?{_DURATION}$",
    "not": {"pattern": f"^-?{_ZERO}$"},
}


# A campaign action's or a recurring send's `message`: the fields of a send_email step,
# as the OpenAPI document defines them (`api.openapi`).
MAIL_MESSAGE_SCHEMA: dict[str, Any] = {"$ref": "#/components/schemas/MailMessage"}


def given(name: str) -> dict[str, Any]:
    """A schema saying that property `name` is there and not null."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def absent(*names: str) -> dict[str, Any]:
    """A schema saying that each of `names` is missing or null."""
    return {"properties": {name: {"type": "null"} for name in names}}


def exactly_one_of(*names: str) -> dict[str, Any]:
    """Exactly one of the properties `names` is given (not null)."""
    return {"oneOf": [given(name) for name in names]}


def not_all_of(*names: str) -> dict[str, Any]:
    """Not every one of the properties `names` is given (not null)."""
    return {"not": {"allOf": [given(name) for name in names]}}


def equals(name: str, *values: Any) -> dict[str, Any]:
    """A schema saying that property `name` is there and one of `values` (a condition of
    `exactly_when`: without `required`, an object without the property would match)."""
    return {"required": [name], "properties": {name: {"enum": list(values)}}}


def exactly_when(condition: dict[str, Any], name: str) -> dict[str, Any]:
    """Property `name` is given (not null) exactly when the object matches `condition`."""
    return {"if": condition, "then": given(name), "else": absent(name)}


def only_with(name: str, other: str) -> dict[str, Any]:
    """Property `name` is given (not null) only when `other` is."""
    return {"if": absent(other), "then": absent(name)}


def decimal_schema(integer_digits: int, places: int, *, negative: bool) -> dict[str, Any]:
    """A decimal as pydantic's `max_digits`/`decimal_places` take it: a JSON number that
    is a multiple of 10^-places, or the same in a string."""
    largest = float(f"{'9' * integer_digits}.{'9' * places}")
    sign = "-?" if negative else ""
    return {
        "anyOf": [
            {
                "type": "number",
                "minimum": -largest if negative else 0,
                "maximum": largest,
                "multipleOf": float(f"1e-{places}"),
            },
            {
                "type": "string",
                "pattern": f"^{sign}[0-9]{{1,{integer_digits}}}(?:\\.[0-9]{{1,{places}}})?$",
            },
        ]
    }
