"""Console sign-in: an API key once, then a signed, HttpOnly session cookie.

The cookie holds the key's SHA-256 digest (the same digest the `api_keys` table is
searched by) and the id of the session's row, signed and dated with itsdangerous;
never the key itself. Each request looks the digest up again, so a revoked key ends
its sessions at once, and a changed JOURNEYS_API_KEY ends the sessions signed in with
the old one; and it looks the session up, so signing out ends the session for every
copy of the cookie, not only in the browser that signed out.

Forms that act (publish, Live/Stop, link/unlink) carry a token derived from the
cookie (double submit, signed): a page of another site cannot post them, on top of
the cookie's SameSite=Lax.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import timedelta
from typing import Annotated

import asyncpg
from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.deps import Caller, PoolDep, SettingsDep, stored_caller
from journeys.settings import ApiSettings
from journeys.store import api_keys, console_sessions

COOKIE = "journeys_console"
# The sign-in form's own cookie: its token is tied to it (login CSRF).
SIGN_IN_COOKIE = "journeys_console_sign_in"
# A working day and then some: a session signed in the morning lasts until evening.
MAX_AGE_SECONDS = 12 * 3600
_BOOTSTRAP = "configured"  # signed in with JOURNEYS_API_KEY itself


class SignInNeeded(Exception):
    """No valid session: the page answers with a redirect to the sign-in form."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason


def _derived(settings: ApiSettings, purpose: bytes) -> bytes:
    """A key of its own for `purpose`, derived from JOURNEYS_SECRET: the tracking tokens'
    HMAC key is never used for anything else as is, and every API process derives the
    same one."""
    return hmac.new(settings.secret.get_secret_value().encode(), purpose, hashlib.sha256).digest()


def _serializer(settings: ApiSettings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        _derived(settings, b"journeys console session"), salt="console-session"
    )


def _configured_stamp(settings: ApiSettings) -> str:
    """Which JOURNEYS_API_KEY a session was signed in with: keyed, as that key may be a
    guessable word, which a plain digest in the cookie would give away."""
    key = _derived(settings, b"journeys console configured key")
    return hmac.new(key, _configured_key(settings), hashlib.sha256).hexdigest()[:32]


async def sign_in(settings: ApiSettings, pool: asyncpg.Pool, key: str) -> tuple[Caller, str]:
    """The caller a key is and the cookie value for its session; 401 when the key is
    not one (the same words as the API's)."""
    key = key.strip()
    if hmac.compare_digest(key.encode("utf-8", "surrogateescape"), _configured_key(settings)):
        caller, kind, digest = (
            Caller(None, api_keys.ALL_SCOPES),
            _BOOTSTRAP,
            _configured_stamp(settings),
        )
    else:
        found = await api_keys.find_key(pool, key) if api_keys.could_be_key(key) else None
        caller, kind, digest = stored_caller(found), "stored", api_keys.token_hash(key).hex()
    session = await console_sessions.start_session(pool, timedelta(seconds=MAX_AGE_SECONDS))
    return caller, _serializer(settings).dumps([kind, digest, str(session)])


def _configured_key(settings: ApiSettings) -> bytes:
    return settings.api_key.get_secret_value().encode()


async def session_caller(request: Request, settings: SettingsDep, pool: PoolDep) -> Caller:
    """The caller of the request's session; `SignInNeeded` without a valid one."""
    value = request.cookies.get(COOKIE)
    if not value:
        raise SignInNeeded()
    signed = _signed_session(settings, value, MAX_AGE_SECONDS)
    if signed is None:
        raise SignInNeeded("your session has expired; sign in again")
    kind, digest, session_id = signed
    if not await console_sessions.session_is_open(pool, session_id):
        raise SignInNeeded("this session was signed out; sign in again")
    if kind == _BOOTSTRAP:
        # Signed before JOURNEYS_API_KEY changed: the key it was made with is gone.
        if not hmac.compare_digest(str(digest), _configured_stamp(settings)):
            raise SignInNeeded("the configured API key changed; sign in again")
        return Caller(None, api_keys.ALL_SCOPES)
    try:
        found = await api_keys.find_key_by_digest(pool, bytes.fromhex(digest))
        return stored_caller(found)
    except (ValueError, HTTPException) as exc:
        detail = exc.detail if isinstance(exc, HTTPException) else None
        raise SignInNeeded(str(detail) if detail else None) from None


async def end_session(request: Request, settings: ApiSettings, pool: asyncpg.Pool) -> None:
    """End the request's session, however old its cookie (a form from before it
    expired); a cookie that is not ours ends nothing."""
    signed = _signed_session(settings, request.cookies.get(COOKIE, ""), None)
    if signed is not None:
        await console_sessions.end_session(pool, signed[2])


def _signed_session(
    settings: ApiSettings, value: str, max_age: int | None
) -> tuple[str, str, uuid.UUID] | None:
    """(kind, key digest, session id) of a cookie this console signed, at most `max_age`
    seconds ago; None for any other value (a cookie from before sessions had rows holds
    two items: its holder signs in again)."""
    try:
        kind, digest, session = _serializer(settings).loads(value, max_age=max_age)
        return str(kind), str(digest), uuid.UUID(session)
    except (BadSignature, ValueError, TypeError, AttributeError):
        return None


def sign_in_token(settings: ApiSettings, nonce: str) -> str:
    """The token of a sign-in form whose cookie holds `nonce`."""
    key = _derived(settings, b"journeys console sign-in")
    return hmac.new(key, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def form_token(request: Request) -> str:
    """The token the session's forms carry (empty without a session)."""
    value = request.cookies.get(COOKIE, "")
    key = _derived(request.app.state.settings, b"journeys console forms")
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


async def _reader(caller: Annotated[Caller, Depends(session_caller)]) -> Caller:
    if "read" not in caller.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this key lacks the 'read' scope")
    return caller


async def _writer(request: Request, caller: Annotated[Caller, Depends(session_caller)]) -> Caller:
    """Acting needs the write scope and the form's token."""
    if "write" not in caller.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"API key '{caller.key_name}' lacks the 'write' scope, which this action needs",
        )
    await check_form_token(request)
    return caller


async def check_form_token(request: Request) -> None:
    """403 unless the posted form carries the session's token."""
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")), form_token(request)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the form is stale or from another site: reload the page"
        )


Reader = Annotated[Caller, Depends(_reader)]
Writer = Annotated[Caller, Depends(_writer)]
