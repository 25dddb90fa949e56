"""API keys with scopes: made, listed, revoked, and found by the key a request brings.

A key is `jk_` and 43 URL-safe characters (32 random bytes). The table keeps its
SHA-256 digest (why a fast, unsalted digest is right for random keys: the migration,
`0012_api_keys.sql`), its first characters to recognise it by, and its scopes; the key
itself is handed out once, by `create_key`, and kept nowhere.

Scopes nest: `admin` includes `write`, which includes `read`. So a key made for a
script that posts events (`write`) can also read what it posted, and an admin key can
do everything. The key configured as `JOURNEYS_API_KEY` is not in the table and has
every scope.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Literal, get_args

import asyncpg
from pydantic import BaseModel

from journeys.db import Executor

ScopeName = Literal["read", "write", "admin"]
SCOPES: tuple[str, ...] = get_args(ScopeName)
# What each scope allows, itself included.
_INCLUDES = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}
ALL_SCOPES = _INCLUDES["admin"]

TOKEN_PREFIX = "jk_"
_TOKEN = re.compile(r"jk_[A-Za-z0-9_-]{43}")
# Shown in listings: `jk_` and 8 characters (48 of the key's 256 bits).
DISPLAY_LENGTH = len(TOKEN_PREFIX) + 8


class ApiKey(BaseModel):
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class FoundKey(BaseModel):
    """The stored key a request's token belongs to."""

    name: str
    scopes: list[str]
    revoked: bool


def scope_problem(scope: str) -> str | None:
    """Why `scope` is not one, or None."""
    if scope in _INCLUDES:
        return None
    return f"unknown scope {scope!r}: the scopes are read, write and admin"


def allowed(scopes: list[str] | frozenset[str]) -> frozenset[str]:
    """Everything keys with these scopes may do (admin ⊇ write ⊇ read)."""
    return frozenset().union(*(_INCLUDES.get(s, frozenset()) for s in scopes))


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def could_be_key(token: str) -> bool:
    """Whether `token` has the shape of a key this module makes (else it is not looked up)."""
    return _TOKEN.fullmatch(token) is not None


_COLUMNS = "name, prefix, scopes, created_at, revoked_at, last_used_at"


async def create_key(pool: Executor, name: str, scopes: Sequence[str]) -> tuple[ApiKey, str] | None:
    """A new key: its row and the key itself (the only time it exists outside the caller's
    hands); None when a key in use has this name already."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await pool.fetchrow(
        f"""INSERT INTO api_keys (name, prefix, hash, scopes) VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
            RETURNING {_COLUMNS}""",
        name,
        token[:DISPLAY_LENGTH],
        token_hash(token),
        sorted(set(scopes), key=SCOPES.index),
    )
    return (ApiKey.model_validate(dict(row)), token) if row else None


async def list_keys(pool: Executor) -> list[ApiKey]:
    """Every key, those in use first, the newest first."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM api_keys ORDER BY revoked_at IS NOT NULL, created_at DESC, id DESC"
    )
    return [ApiKey.model_validate(dict(r)) for r in rows]


async def revoke_key(pool: Executor, name: str) -> ApiKey | None:
    """Revoke the key in use named `name`; None when there is none."""
    row = await pool.fetchrow(
        f"""UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
            RETURNING {_COLUMNS}""",
        name,
    )
    return ApiKey.model_validate(dict(row)) if row else None


async def find_key(pool: asyncpg.Pool, token: str) -> FoundKey | None:
    """The stored key `token` is, by its digest, in one statement (a unique-index lookup);
    its `last_used_at` is moved on at most once a minute, so busy keys cost no write per
    request. None when no key has this digest."""
    return await find_key_by_digest(pool, token_hash(token))


async def find_key_by_digest(pool: asyncpg.Pool, digest: bytes) -> FoundKey | None:
    """`find_key` by the key's digest (a console session keeps the digest, not the key)."""
    row = await pool.fetchrow(
        """WITH touched AS (
               UPDATE api_keys SET last_used_at = now()
               WHERE hash = $1 AND revoked_at IS NULL
                 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
               RETURNING id)
           SELECT name, scopes, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE hash = $1""",
        digest,
    )
    return FoundKey.model_validate(dict(row)) if row else None
