"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import console, openapi, outages
from api.deps import json_within_depth
from api.errors import bounded, readable
from api.hits import HitBuffer
from api.routes import (
    api_keys,
    bounces,
    campaigns,
    codec,
    contacts,
    dev_mail,
    dev_sms,
    events,
    frequency_caps,
    health,
    journeys,
    metrics,
    operations,
    ops,
    records,
    recurring,
    reference,
    tracking,
    webhooks,
)
from journeys.db import create_pool
from journeys.settings import ApiSettings
from journeys.sns import SnsClient
from journeys.temporal import connect

# 10,000 enrolment ids take about 400 kB; a journey with large templates a few MB.
MAX_BODY_BYTES = 8 * 1024 * 1024


class SafeJSONResponse(JSONResponse):
    """JSON escaped to ASCII: an error that echoes a lone surrogate from the input
    must still encode (the default UTF-8 rendering raised, and answered 500)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    # 10,000 malformed ids: the first 100 problems and a count, not 2 MB (`bounded`);
    # each in the definition format's words, without echoing large inputs (`readable`).
    errors = bounded(readable(error) for error in exc.errors())
    if console.is_console(request):
        return console.error_page(request, 422, errors)
    return SafeJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _template_matches(template: str, path: str) -> bool:
    """Whether `path` is an instance of an OpenAPI path template such as /t/u/{token}."""
    literal = re.split(r"\{[^}]+\}", template)
    return re.fullmatch("[^/]+".join(map(re.escape, literal)), path) is not None


def _too_large(scope: Scope) -> str:
    """What a 413 of the body limit says: the limit of this route (POST /files takes more)."""
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY) or MAX_BODY_BYTES
    return f"the body is larger than {limit // (1024 * 1024)} MB"


# What Starlette's body limit says (as the detail of its HTTPException, or as a
# text/plain answer); the app's own 413s say more.
_LIMIT_PHRASE = "Content Too Large"


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 413 and exc.detail == _LIMIT_PHRASE:
        exc = StarletteHTTPException(413, _too_large(request.scope), exc.headers)
    if console.is_console(request):
        return console.error_page(request, exc.status_code, exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route with this path; the
        # caller needs all of them (GET and POST on /t/u/{token}). The OpenAPI
        # document lists every operation by path template.
        path = request.url.path
        allowed = {
            method.upper()
            for template, operations in request.app.openapi()["paths"].items()
            if _template_matches(template, path)
            for method in operations
        }
        headers["Allow"] = ", ".join(sorted(allowed))
    return SafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


class JsonTooLarge:
    """Pure ASGI: every 413 in the documented JSON shape.

    Starlette's body limit answers `text/plain` when the request announces its length
    (it replaces whatever the route answered by its own 413); a chunked body gets its
    413 through `_http_error`, as JSON. This turns the first into the second.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacing = False

        async def json_send(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 413:
                media_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                replacing = media_type.startswith("text/plain")
            if not replacing:
                await send(message)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                exc = StarletteHTTPException(413, _LIMIT_PHRASE)
                await (await _http_error(Request(scope, receive), exc))(scope, receive, send)

        await self.app(scope, receive, json_send)


def create_app(settings: ApiSettings, sns: SnsClient | None = None) -> FastAPI:
    """The API; `sns` stands in for Amazon SNS (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        # Neither backend needs to be up for the API to start: until they are,
        # requests that need them answer 503 and /healthz says which is down.
        app.state.pool = await create_pool(
            settings.database_url, min_size=0, max_size=20, command_timeout=5
        )
        app.state.temporal = await connect(settings, lazy=True)
        app.state.hits = HitBuffer(app.state.pool)
        app.state.sns = sns or SnsClient()
        try:
            yield
        finally:
            await app.state.hits.close()
            await app.state.pool.close()

    app = FastAPIOffline(
        title="Journeys",
        version="0.1.0",
        summary="Marketing-automation journeys on Temporal",
        lifespan=lifespan,
        redoc_url=None,  # one docs page, served from the package's own assets
        max_body_size=MAX_BODY_BYTES,
        # A body nested too deep is refused before any route validates it.
        dependencies=[Depends(json_within_depth)],
    )
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    # FastAPI puts its body limit outside the app's own middleware (`add_middleware`
    # would sit inside it): JsonTooLarge wraps the whole stack, limit included.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: JsonTooLarge(build_stack())  # type: ignore[method-assign]
    outages.install(app)
    codec.install(app, settings)
    console.install(app)
    for module in (
        contacts,
        campaigns,
        codec,
        journeys,
        events,
        frequency_caps,
        operations,
        ops,
        recurring,
        reference,
        records,
        api_keys,
        tracking,
        webhooks,
        bounces,
        health,
        metrics,
    ):
        app.include_router(module.router)
    if settings.dev_mail_dir is not None:
        app.include_router(dev_mail.router)
    if settings.dev_sms_dir is not None:
        app.include_router(dev_sms.router)
    openapi.install(app)
    return app
