"""The worker's probes (issue 24: workers had no health endpoint): /healthz while its
event loop runs, /readyz while it polls Temporal and holds the dispatcher's LISTEN,
/metrics beside them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from journeys.devstack import free_port
from journeys.settings import Settings
from journeys.temporal import connect
from journeys.worker_health import WorkerHealth, serve
from tests.conftest import Stack
from worker import running_worker


async def _ready(http: httpx.AsyncClient, timeout: float = 20) -> httpx.Response:
    for _ in range(int(timeout * 10)):
        response = await http.get("/readyz")
        if response.status_code == 200:
            return response
        await asyncio.sleep(0.1)
    return response


async def test_a_running_worker_is_alive_and_ready(stack: Stack) -> None:
    health = WorkerHealth()
    port = serve(0, health, addr="127.0.0.1")
    settings = Settings(**_worker_settings(stack))
    # A second worker process-alike: its own client (one worker per client and queue).
    client = await connect(settings)
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        running_worker(settings, client, health=health),
    ):
        ready = await _ready(http)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ok",
            "checks": {
                "event_loop": True,
                "temporal": True,
                "polling": True,
                "dispatcher_listening": True,
            },
        }
        alive = await http.get("/healthz")
        assert alive.status_code == 200 and alive.json()["status"] == "ok"
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and "journeys_" in metrics.text
    # Once the worker has stopped: not ready, and says why.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        stopped = await http.get("/readyz")
        assert stopped.status_code == 503
        assert stopped.headers["retry-after"] == "5"
        assert stopped.json()["checks"]["polling"] is False
        assert stopped.json()["checks"]["dispatcher_listening"] is False


async def test_not_ready_once_temporal_stops_answering(stack: Stack) -> None:
    """Ready while Temporal answers its health checks; not ready (and saying so) once
    the last answer is older than allowed, alive all the same."""
    health = WorkerHealth(stale_seconds=1.5)
    port = serve(0, health, addr="127.0.0.1")
    nowhere = Settings(
        **{**_worker_settings(stack), "temporal_address": f"127.0.0.1:{free_port()}"}
    )
    unreachable = await connect(nowhere, lazy=True)
    health.polling = lambda: True
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        watching = asyncio.create_task(health.watch(stack.temporal))
        try:
            assert (await _ready(http)).status_code == 200
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        watching = asyncio.create_task(health.watch(unreachable))
        try:
            for _ in range(50):
                answer = await http.get("/readyz")
                if answer.status_code == 503:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 503
            assert answer.json()["checks"] == {
                "event_loop": True,
                "temporal": False,
                "polling": True,
            }
            assert (await http.get("/healthz")).status_code == 200  # alive all the same
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)


def _worker_settings(stack: Stack) -> dict[str, Any]:
    fields = Settings.model_fields
    return {
        name: value
        for name, value in stack.settings.model_dump().items()
        if name in fields and value is not None
    }
