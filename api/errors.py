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


def error_response(description: str) -> dict[str, Any]:
    # Spelled out as JSON: with "model", FastAPI would document it in the route's own
    # media type (text/html for the unsubscribe page), but errors are always JSON.
    return {
        "description": description,
        "content": {"application/json": {"schema": ErrorDetail.model_json_schema()}},
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
