"""Errors in the same shape FastAPI gives for a bad body: `{"detail": [{loc, msg, type}]}`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, status

from journeys.definition import Problem


def unprocessable(
    problems: Sequence[Problem], *, prefix: tuple[str, ...] = ("body",)
) -> HTTPException:
    detail: list[dict[str, Any]] = [
        {"loc": [*prefix, *loc], "msg": msg, "type": "value_error"} for loc, msg in problems
    ]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)
