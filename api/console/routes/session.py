"""Sign in with an API key, sign out."""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.pages import render
from api.console.session import (
    COOKIE,
    MAX_AGE_SECONDS,
    SIGN_IN_COOKIE,
    Reader,
    check_form_token,
    end_session,
    sign_in,
    sign_in_token,
)
from api.deps import PoolDep, SettingsDep
from journeys.settings import ApiSettings

router = APIRouter(prefix="/console", include_in_schema=False)


def _back_to(next_page: str | None) -> str:
    """Where to go after signing in: a console page, never another site, nor, by dot
    segments or escapes, another page of this one (`/console/../c/<token>` is a tracked
    click)."""
    if next_page:
        path, _, query = next_page.partition("?")
        segments = path.split("/")
        if (
            re.fullmatch(r"/console(/[A-Za-z0-9._~-]*)*", path)
            and ".." not in segments
            and "." not in segments
            and "\\" not in next_page
        ):
            return path + (f"?{query}" if query else "")
    return "/console/journeys"


@router.get("")
async def home(_: Reader) -> Response:
    return RedirectResponse("/console/journeys", status_code=303)


def _sign_in_page(
    request: Request,
    settings: ApiSettings,
    next_page: str,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The sign-in form, with a token tied to a cookie of its own: another site cannot
    post it to sign a browser in with a key of its choosing."""
    nonce = secrets.token_urlsafe(16)
    page = render(
        request,
        "sign_in.html",
        caller=None,
        next=next_page,
        error=error,
        token=sign_in_token(settings, nonce),
        status_code=status_code,
    )
    page.set_cookie(
        SIGN_IN_COOKIE, nonce, max_age=3600, path="/console/sign-in", httponly=True, samesite="lax"
    )
    return page


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(
    request: Request, settings: SettingsDep, next: str | None = None, reason: str | None = None
) -> HTMLResponse:
    return _sign_in_page(request, settings, _back_to(next), reason)


@router.post("/sign-in")
async def sign_in_with_key(
    request: Request,
    settings: SettingsDep,
    pool: PoolDep,
    key: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
    token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    nonce = request.cookies.get(SIGN_IN_COOKIE, "")
    if not nonce or not hmac.compare_digest(token, sign_in_token(settings, nonce)):
        error = "this sign-in form is stale or from another site: sign in here"
        return _sign_in_page(request, settings, _back_to(next), error, status_code=403)
    if not key.strip():
        error = "enter an API key: JOURNEYS_API_KEY, or one made with `journeys keys create`"
        return _sign_in_page(request, settings, next, error, status_code=401)
    try:
        _, cookie = await sign_in(settings, pool, key)
    except HTTPException as exc:
        return _sign_in_page(request, settings, next, str(exc.detail), status_code=401)
    response = RedirectResponse(_back_to(next), status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=MAX_AGE_SECONDS,
        path="/console",
        httponly=True,
        samesite="lax",
        # Behind a proxy that ends TLS the request looks like http: the public address
        # says whether browsers reach the console over https.
        secure=settings.public_url.startswith("https://") or request.url.scheme == "https",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request, settings: SettingsDep, pool: PoolDep) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    if not request.cookies.get(COOKIE):
        return response  # signed out already (or a post from another site: no cookie)
    # Only this console's own form (its token), so that another site cannot sign a
    # browser out; the session then ends for every copy of its cookie.
    await check_form_token(request)
    await end_session(request, settings, pool)
    response.delete_cookie(COOKIE, path="/console")
    return response
