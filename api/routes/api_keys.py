"""API keys: make one with scopes (its key shown once), list them, revoke one.

Needs the `admin` scope, so a key for a script cannot make itself a stronger one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from api.deps import PoolDep, require_admin
from api.errors import AUTH_RESPONSES, NOT_FOUND_RESPONSE, error_response, not_found
from api.outages import OUTAGE_RESPONSE
from journeys.definition.common import KEY_PATTERN
from journeys.store import api_keys
from journeys.text import StorableModel

log = structlog.get_logger(__name__)

router = APIRouter(
    prefix="/api-keys",
    tags=["api keys"],
    dependencies=[Depends(require_admin)],
    responses={**AUTH_RESPONSES, **OUTAGE_RESPONSE},
)


def _known_scope(value: Any) -> Any:
    # Named in the message: pydantic's own for a Literal lists the choices, not the input.
    if isinstance(value, str) and (problem := api_keys.scope_problem(value)):
        raise PydanticCustomError("scope", problem)
    return value


Scope = Annotated[api_keys.ScopeName, BeforeValidator(_known_scope)]


def _in_order(scopes: list[str]) -> list[str]:
    return sorted(set(scopes), key=api_keys.SCOPES.index)


class ApiKeyIn(StorableModel):
    name: str = Field(
        pattern=KEY_PATTERN,
        examples=["crm-sync"],
        description="unique among the keys in use (a revoked key's name may be given again)",
    )
    scopes: Annotated[list[Scope], AfterValidator(_in_order)] = Field(
        min_length=1,
        examples=[["read", "write"]],
        description="read (GET), write (every other method; includes read), "
        "admin (API keys and operations; includes write)",
    )


class ApiKeyView(BaseModel):
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it by")
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="to the minute")


class CreatedApiKey(ApiKeyView):
    key: str = Field(
        description="the key, for `Authorization: Bearer <key>`: shown this once, "
        "only its SHA-256 digest is stored"
    )


def _view(key: api_keys.ApiKey) -> ApiKeyView:
    return ApiKeyView.model_validate(key.model_dump())


@router.post(
    "",
    status_code=201,
    response_model=CreatedApiKey,
    responses={409: error_response("a key in use has this name")},
)
async def create_api_key(body: ApiKeyIn, pool: PoolDep) -> CreatedApiKey:
    """A new key with these scopes. The answer holds the key itself, once: keep it."""
    made = await api_keys.create_key(pool, body.name, body.scopes)
    if made is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"an API key named '{body.name}' is in use; revoke it first or pick another name",
        )
    key, token = made
    log.info("api_key.created", name=key.name, scopes=key.scopes)
    return CreatedApiKey(**key.model_dump(), key=token)


@router.get("", response_model=list[ApiKeyView])
async def list_api_keys(pool: PoolDep) -> list[ApiKeyView]:
    """Every key made here, those in use first (never the key itself, nor its digest). The
    configured JOURNEYS_API_KEY is not listed: it is not stored."""
    return [_view(k) for k in await api_keys.list_keys(pool)]


@router.delete("/{name}", response_model=ApiKeyView, responses=NOT_FOUND_RESPONSE)
async def revoke_api_key(
    name: Annotated[str, Path(pattern=KEY_PATTERN)], pool: PoolDep
) -> ApiKeyView:
    """Revoke the key in use with this name: from the next request on it gets 401."""
    revoked = await api_keys.revoke_key(pool, name)
    if revoked is None:
        raise not_found(f"no API key named '{name}' is in use")
    log.info("api_key.revoked", name=name)
    return _view(revoked)
