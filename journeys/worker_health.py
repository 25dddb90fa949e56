"""The worker's own HTTP endpoint: `/metrics` (Prometheus), `/healthz` (alive) and
`/readyz` (doing its work), served from a thread so a busy event loop cannot keep a
probe from being answered, and so a stalled one shows.

- `/healthz`: the event loop has run within `STALL_SECONDS` (a heartbeat task), 200
  or 503. A liveness probe restarts a worker whose loop hangs.
- `/readyz`: the worker polls Temporal (it runs, and Temporal answered a health
  check within `STALE_SECONDS`) and, where it dispatches events, the dispatcher holds
  its LISTEN connection; 200 or 503 with each check by name, and `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from temporalio.client import Client

# The loop's heartbeat, and how long without one means it is stalled.
BEAT_SECONDS = 1.0
STALL_SECONDS = 30.0
# How often Temporal is asked, how long an answer may take, and how old a good one
# may be for the worker to count as ready.
CHECK_SECONDS = 5.0
CHECK_TIMEOUT = 3.0
STALE_SECONDS = 20.0

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


class WorkerHealth:
    """What the probes answer from: written by the worker's tasks, read by the thread
    that serves the endpoint (plain attribute reads and writes)."""

    def __init__(self, stale_seconds: float = STALE_SECONDS) -> None:
        self.stale_seconds = stale_seconds
        self.beat = time.monotonic()
        self.temporal_at: float | None = None
        self.polling: Callable[[], bool] = lambda: False
        self.listening: Callable[[], bool] | None = None

    async def watch(self, client: Client) -> None:
        """Beat every second and ask Temporal every few, until cancelled."""
        asked = 0.0
        while True:
            self.beat = time.monotonic()
            if self.beat - asked >= CHECK_SECONDS:
                asked = self.beat
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CHECK_TIMEOUT):
                        if await client.service_client.check_health():
                            self.temporal_at = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)

    def alive(self) -> dict[str, bool]:
        return {"event_loop": time.monotonic() - self.beat < STALL_SECONDS}

    def ready(self) -> dict[str, bool]:
        now = time.monotonic()
        checks = {
            **self.alive(),
            "temporal": self.temporal_at is not None
            and now - self.temporal_at < self.stale_seconds,
            "polling": self.polling(),
        }
        if self.listening is not None:
            checks["dispatcher_listening"] = self.listening()
        return checks


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def _answer(start_response: StartResponse, checks: dict[str, bool]) -> Iterable[bytes]:
    ok = all(checks.values())
    body = json.dumps({"status": "ok" if ok else "unavailable", "checks": checks}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if not ok:
        headers.append(("Retry-After", "5"))
    start_response("200 OK" if ok else "503 Service Unavailable", headers)
    return [body]


def serve(port: int, health: WorkerHealth, addr: str = "0.0.0.0") -> int:
    """Serve /metrics, /healthz and /readyz at `addr`:`port` from a daemon thread; the
    port bound (`port` 0 picks one)."""
    metrics = make_wsgi_app()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _answer(start_response, health.alive())
        if path == "/readyz":
            return _answer(start_response, health.ready())
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True, name="worker-health").start()
    return int(server.server_port)
