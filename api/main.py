"""The FastAPI application: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.routes import contacts, dev_mail, events, health, journeys, tracking
from journeys.db import create_pool
from journeys.settings import Settings, get_settings
from journeys.temporal import connect


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings.database_url, max_size=20)
        app.state.temporal = await connect(settings)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(
        title="Journeys",
        version="0.1.0",
        summary="Marketing-automation journeys on Temporal",
        lifespan=lifespan,
    )
    for module in (contacts, journeys, events, tracking, health):
        app.include_router(module.router)
    if settings.dev_mail_dir is not None:
        app.include_router(dev_mail.router)
    return app
