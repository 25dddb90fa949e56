from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import PoolDep, TemporalDep

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="PostgreSQL and Temporal reachable",
    responses={503: {"description": "PostgreSQL or Temporal does not answer (which is named)"}},
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
    )
