"""Values that PostgreSQL can store: no NUL characters, no lone surrogates, no NaN.

JSON can carry both (`"a\\u0000b"`, `"\\ud800"`), pydantic accepts both as `str`,
and PostgreSQL refuses both (NUL in text and jsonb, a lone surrogate when the
driver encodes UTF-8): without this check they came back as a 500 from the
database instead of a 422 naming the field. Models that take input inherit
`StorableModel`, which checks every field, nested lists and mappings included.
Side-effect free: the workflow sandbox imports it through `journeys.definition`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return "must not contain NUL characters (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (\\u{ord(text[exc.start]):04x}); send valid Unicode"
    return None


# An e-mail address in what a mail server or a report says ("550 5.1.1 <ann@example.com>").
ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"']+")
# Control characters (C0 with NUL, DEL, C1): a header field or a reply may carry them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def without_addresses(text: str) -> str:
    """`text` with each e-mail address as `<address>` (`<ann@example.com>` too): what a
    mail server or a bounce notice says goes to logs, Temporal's history, the message
    log and a delivery error's detail, where addresses do not belong."""
    return ADDRESS.sub("<address>", text).replace("<<address>>", "<address>")


def printable(text: str) -> str:
    """`text` on one line and storable: control characters (a NUL, line breaks, escape
    sequences) and runs of white space as one space, a lone surrogate as U+FFFD."""
    text = _SURROGATE.sub("\ufffd", text)
    return " ".join(_CONTROL.sub(" ", text).split())


def storable_problem(value: Any, where: str = "") -> str | None:
    """The first string in `value` (keys included) that cannot be stored, with its path."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{where}: {problem}" if problem and where else problem
    if isinstance(value, float) and not math.isfinite(value):
        # JSON parsers accept NaN and Infinity; jsonb does not.
        return f"{where or 'value'}: {value} is not a JSON number"
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and (problem := text_problem(key)):
                return f"key {path!r} {problem}"
            if problem := storable_problem(item, path):
                return problem
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if problem := storable_problem(item, f"{where}[{i}]"):
                return problem
    return None


def check_storable(value: Any) -> Any:
    if problem := storable_problem(value):
        raise ValueError(problem)
    return value


# Set on the JSON Schema of every StorableModel; `api.openapi` states there that no
# string holds NUL (and takes the mark away).
STORABLE_MARK = "x-storable"


class StorableModel(BaseModel):
    """Input whose strings, wherever they are, can all be stored."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        handler.resolve_ref_schema(schema)[STORABLE_MARK] = True
        return schema

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Nested models check their own fields; plain values are walked here.
        return value if isinstance(value, BaseModel) else check_storable(value)
