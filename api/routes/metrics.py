"""`GET /metrics`: the process's Prometheus metrics (`journeys.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import PoolDep, require_api_key
from api.errors import AUTH_RESPONSES
from api.outages import OUTAGE_RESPONSE
from journeys.metrics import read_outbox

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require_api_key)],
    responses={**AUTH_RESPONSES, **OUTAGE_RESPONSE},
)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    response_class=Response,
    responses={
        200: {
            "description": "the text exposition format: `journeys_*` (what this process"
            " did, and the event outbox's backlog read from the database now) and"
            " `temporal_*` (its Temporal client's requests); needs the `read` scope",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(pool: PoolDep) -> Response:
    await read_outbox(pool)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
