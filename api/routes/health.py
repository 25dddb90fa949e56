from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import PoolDep, TemporalDep
from api.outages import RETRY_AFTER_SECONDS

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable when a backend does not answer")
    postgres: str = Field(description="ok, or error: <what went wrong>")
    temporal: str = Field(description="ok, or error: <what went wrong>")


@router.get(
    "/healthz",
    summary="PostgreSQL and Temporal reachable",
    response_model=Health,
    responses={
        503: {
            "description": "PostgreSQL or Temporal does not answer (which is named); "
            "retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "model": Health,
        }
    },
)
async def healthz(pool: PoolDep, client: TemporalDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(client.service_client.check_health(), timeout=2)
        checks["temporal"] = "ok"
    except Exception as exc:
        checks["temporal"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", **checks},
        status_code=200 if healthy else 503,
        # As every other 503: a load balancer or a client knows when to ask again.
        headers=None if healthy else {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
