"""Request dependencies: settings, the database pool, the Temporal client, auth.

All are `async def` although none awaits: FastAPI runs plain `def` dependencies
in a thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.hits import HitBuffer
from journeys.definition.common import KEY_PATTERN
from journeys.settings import ApiSettings


async def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def _temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def _hits(request: Request) -> HitBuffer:
    hits: HitBuffer = request.app.state.hits
    return hits


# A key in the path: a journey's, a selection's, a campaign's, a recurring send's.
Key = Annotated[str, Path(pattern=KEY_PATTERN)]

SettingsDep = Annotated[ApiSettings, Depends(_settings)]
HitsDep = Annotated[HitBuffer, Depends(_hits)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
TemporalDep = Annotated[Client, Depends(_temporal)]

_bearer = HTTPBearer(auto_error=False, description="JOURNEYS_API_KEY")


async def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Management endpoints need `Authorization: Bearer <JOURNEYS_API_KEY>`."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <JOURNEYS_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials.encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, settings.api_key.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )


# A client's retry key: the same key on a retry does the work once (events, enrolments).
IdempotencyKey = Annotated[
    str | None,
    Header(
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="the same key on a retry does the work only once and answers the same",
    ),
]
