"""Request dependencies: settings, the database pool, the Temporal client, auth (API
keys and their scopes).

All are `async def`, also those that await nothing: FastAPI runs plain `def`
dependencies in a thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.errors import bounded
from api.hits import HitBuffer
from journeys.definition.common import KEY_PATTERN, Problem
from journeys.definition.limits import DEPTH_PROBLEM, json_depth_problem, size_problems
from journeys.settings import ApiSettings
from journeys.store import api_keys


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


_BODY_METHODS = ("POST", "PUT", "PATCH")


async def json_within_depth(request: Request) -> None:
    """Every JSON body: refused with a 422 when it nests deeper than the limit, before
    a route validates it (a deep body made validation take seconds and answer
    megabytes, and the worker's JSON parser stops at 128 levels)."""
    if request.method not in _BODY_METHODS:
        return
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind != "application/json" and not kind.endswith("+json"):
        return
    try:
        data = await request.json()
    except ValueError:
        return  # not JSON: the route's validation says so
    except RecursionError:  # deeper than Python's parser goes: deeper than the limit
        raise _too_large([((), DEPTH_PROBLEM)]) from None
    if (problem := json_depth_problem(data)) is not None:
        raise _too_large([problem])


def _too_large(problems: list[Problem]) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        bounded({"loc": ["body", *loc], "msg": msg, "type": "too_large"} for loc, msg in problems),
    )


async def within_definition_limits(request: Request) -> None:
    """Refuse a definition over a size limit (steps, depths, bytes) with a 422 naming
    the limit, before it is validated: validating a body made to be deep or long would
    hold the event loop for seconds and answer megabytes. FastAPI has parsed the JSON
    by now (and keeps it), so reading it again costs nothing."""
    try:
        data = await request.json()
    except ValueError:
        return  # not JSON: the body's validation says so
    except RecursionError:
        raise _too_large([((), DEPTH_PROBLEM)]) from None
    problems = size_problems(data)
    if problems:
        raise _too_large(problems)


# A key in the path: a journey's, a selection's, a campaign's, a recurring send's.
Key = Annotated[str, Path(pattern=KEY_PATTERN)]

SettingsDep = Annotated[ApiSettings, Depends(_settings)]
HitsDep = Annotated[HitBuffer, Depends(_hits)]
PoolDep = Annotated[asyncpg.Pool, Depends(_pool)]
TemporalDep = Annotated[Client, Depends(_temporal)]

_bearer = HTTPBearer(
    auto_error=False,
    description="JOURNEYS_API_KEY (every scope), or a key made with POST /api-keys",
)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: the configured key (`key_name` None) or a stored one."""

    key_name: str | None
    scopes: frozenset[str]  # what it may do, the scopes it includes counted in


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def _caller(
    settings: SettingsDep,
    pool: PoolDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The key of the request: the configured JOURNEYS_API_KEY (compared in constant time,
    no query) or a stored key, found by its digest in one indexed query. Without a cache:
    a revoked key is refused from the next request on, in every API process.

    FastAPI runs it once per request, however many dependencies below ask for it."""
    if credentials is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <JOURNEYS_API_KEY>'")
    token = credentials.credentials
    given = token.encode("utf-8", "surrogateescape")
    if hmac.compare_digest(given, settings.api_key.get_secret_value().encode()):
        return Caller(None, api_keys.ALL_SCOPES)
    # Anything not shaped like a made key cannot be one: no query for it.
    found = await api_keys.find_key(pool, token) if api_keys.could_be_key(token) else None
    return stored_caller(found)


def stored_caller(found: api_keys.FoundKey | None) -> Caller:
    """The caller of a stored key; 401 when there is none or it was revoked."""
    if found is None:
        raise _unauthorized("invalid API key")
    if found.revoked:
        raise _unauthorized(f"API key '{found.name}' was revoked")
    return Caller(found.name, api_keys.allowed(found.scopes))


CallerDep = Annotated[Caller, Depends(_caller)]


def _forbidden(caller: Caller, scope: str, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"API key '{caller.key_name}' lacks the '{scope}' scope, which {what} needs",
    )


async def require_api_key(request: Request, caller: CallerDep) -> Caller:
    """Management endpoints need `Authorization: Bearer <key>`: GET and HEAD the `read`
    scope, every other method `write` (admin includes write, write includes read)."""
    scope = "read" if request.method in ("GET", "HEAD") else "write"
    if scope not in caller.scopes:
        raise _forbidden(caller, scope, request.method)
    return caller


async def require_admin(caller: CallerDep) -> Caller:
    """Administration (API keys, and operations on runs) needs the `admin` scope."""
    if "admin" not in caller.scopes:
        raise _forbidden(caller, "admin", "this endpoint")
    return caller


# A client's retry key: the same key on a retry does the work once (events, enrolments).
IdempotencyKey = Annotated[
    str | None,
    Header(
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="the same key on a retry does the work only once and answers the same",
    ),
]
