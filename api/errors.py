"""Errors in the same shape FastAPI gives for a bad body: `{"detail": [{loc, msg, type}]}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, status
from pydantic import BaseModel

from journeys.definition import Problem


def unprocessable(
    problems: Sequence[Problem], *, prefix: tuple[str, ...] = ("body",)
) -> HTTPException:
    detail: list[dict[str, Any]] = [
        {"loc": [*prefix, *loc], "msg": msg, "type": "value_error"} for loc, msg in problems
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


class ErrorDetail(BaseModel):
    detail: str


# Statuses every route of a kind can answer, for the OpenAPI document.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key", "model": ErrorDetail},
    400: {"description": "the body is not UTF-8 JSON", "model": ErrorDetail},
    413: {"description": "the body is larger than 8 MB", "model": ErrorDetail},
}
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such resource", "model": ErrorDetail}
}


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)
