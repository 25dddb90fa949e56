"""Errors in the same shape FastAPI gives for a bad body: `{"detail": [{loc, msg, type}]}`."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from fastapi import HTTPException, status
from pydantic import BaseModel

from journeys.definition import Problem
from journeys.definition.explain import explained
from journeys.schema import (
    CROSS_FIELD,
    DEFINITION,
    INVALID_CURSOR,
    OUT_OF_RANGE,
    PAYLOAD,
    PHONE_NUMBER,
    STORED_STATE,
    TOO_LARGE,
    UNKNOWN_REFERENCE,
    VISIBILITY_QUERY,
)

# A 422 lists this many problems one by one, then one entry counts the rest: ten
# thousand unknown ids answer a few kB, not a megabyte.
MAX_PROBLEMS = 100

H = TypeVar("H", bound=Hashable)


def _shared_start(a: list[Any], b: list[Any]) -> list[Any]:
    same = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        same += 1
    return a[:same]


def bounded(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first MAX_PROBLEMS errors and, when there are more, one entry that counts
    them: `{"loc": <what every error's loc starts with>, "type": "too_many_problems",
    "ctx": {"shown": 100, "more": n}}`, in the documented shape of a 422's errors.
    One pass over `errors`, which may be a generator."""
    shown: list[dict[str, Any]] = []
    more = 0
    common: list[Any] | None = None
    for error in errors:
        loc = list(error["loc"])
        if common is None:
            common = loc
        elif common != loc[: len(common)]:
            common = _shared_start(common, loc)
        if len(shown) < MAX_PROBLEMS:
            shown.append(error)
        else:
            more += 1
    if more:
        shown.append(
            {
                "loc": common,
                "msg": f"{more:,} more problems like these are not listed "
                f"({MAX_PROBLEMS + more:,} in all)",
                "type": "too_many_problems",
                "ctx": {"shown": MAX_PROBLEMS, "more": more},
            }
        )
    return shown


# An input larger than this (as JSON) is left out of a 422's entry: the caller sent it.
ECHOED_INPUT_CHARS = 200


def readable(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error as the caller reads it best: about a step, in the definition
    format's words (`explained`); its input only when short; no documentation URL."""
    shown = {key: value for key, value in error.items() if key not in ("url", "input")}
    if (message := explained(error)) is not None:
        shown["msg"] = message
    if "input" in error:
        try:
            short = len(json.dumps(error["input"], default=str)) <= ECHOED_INPUT_CHARS
        except ValueError:  # a structure that refers to itself: never short
            short = False
        if short:
            shown["input"] = error["input"]
    return shown


# The `type` of a 422 problem the OpenAPI document could not have ruled out: a rule JSON
# Schema cannot state (`journeys.schema`). The document states every other rule
# (patterns, formats, ranges, "exactly one of"), so a request that fits it is refused
# only for one of these; the schemathesis run of tests/faults checks that it is so.
BEYOND_SCHEMA = {
    UNKNOWN_REFERENCE: "names a contact, user, selection, journey, record (type), file or "
    "recurring send that does not exist, or is not of the kind needed",
    STORED_STATE: "does not fit what is stored (a declared field type, internal testers, "
    "a recurring send's exclusion of recent recipients)",
    DEFINITION: "the definition's graph, templates or references, or a condition that a "
    "query cannot answer (a message condition; 'in' without a list): the place named",
    CROSS_FIELD: "two values that do not fit together (an end before its start)",
    OUT_OF_RANGE: "a duration's or a moment's value out of bounds (named)",
    INVALID_CURSOR: "a cursor this API did not give",
    PHONE_NUMBER: "not a phone number",
    VISIBILITY_QUERY: "Temporal refused the visibility query",
    PAYLOAD: "a payload that does not decrypt",
    TOO_LARGE: "nests deeper, or holds more in all, than the definition limits allow",
}
# Problems whose `type` is none of these break a rule the document states.
VALUE_ERROR = "value_error"

TypedProblem = tuple[tuple[str | int, ...], str, str]  # (loc, msg, type)


def unprocessable_typed(
    problems: Iterable[TypedProblem], *, prefix: tuple[str, ...] = ("body",)
) -> HTTPException:
    """422: each problem in pydantic's shape with its own `type`, the first MAX_PROBLEMS
    of them (`bounded`)."""
    detail = bounded(
        {"loc": [*prefix, *loc], "msg": msg, "type": kind} for loc, msg, kind in problems
    )
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def unprocessable(
    problems: Iterable[Problem], *, prefix: tuple[str, ...] = ("body",), kind: str = VALUE_ERROR
) -> HTTPException:
    """422: each problem in pydantic's shape, of type `kind`, the first MAX_PROBLEMS of
    them (`bounded`)."""
    return unprocessable_typed(((loc, msg, kind) for loc, msg in problems), prefix=prefix)


def unknown_items(
    field: str, items: Sequence[H], unknown: Iterable[H], msg: Callable[[H], str]
) -> HTTPException:
    """422 naming each of `items` that is in `unknown` at its own index in `field` (an
    item given twice at both of its indexes): the first MAX_PROBLEMS, then their count.
    Linear: `unknown` becomes a set and `items` is walked once (`items.index` per item
    took seconds for 10,000 ids, holding the event loop, and named duplicates at the
    first index)."""
    wrong = set(unknown)
    return unprocessable(
        (((field, i), msg(item)) for i, item in enumerate(items) if item in wrong),
        kind=UNKNOWN_REFERENCE,
    )


class ErrorDetail(BaseModel):
    detail: str


def error_response(description: str) -> dict[str, Any]:
    # Spelled out as JSON: with "model", FastAPI would document it in the route's own
    # media type (text/html for the unsubscribe page), but errors are always JSON.
    return {
        "description": description,
        "content": {"application/json": {"schema": ErrorDetail.model_json_schema()}},
    }


def unprocessable_response(description: str) -> dict[str, Any]:
    """A 422 as `unprocessable` answers it: pydantic's list of problems, the schema
    FastAPI documents for the 422s of its own validation (`HTTPValidationError`)."""
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
        },
    }


# Statuses every route of a kind can answer, for the OpenAPI document.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_response("missing, invalid or revoked API key"),
    403: error_response("the API key lacks the scope this needs (named)"),
    400: error_response("the body is not UTF-8 JSON"),
    413: error_response("the body is larger than 8 MB"),
}
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {404: error_response("no such resource")}


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)
