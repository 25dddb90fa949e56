"""What a test does the way an API client or a mail reader would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from temporalio.client import WorkflowHandle

from journeys.devstack import free_port
from journeys.settings import ApiSettings
from journeys.sns import SnsClient

T = TypeVar("T")


@dataclass
class Served:
    """An app served over real HTTP for a test: its client, and in a thread of its own
    the event loop it runs on (`loop_lag` measures how long that loop is held)."""

    http: httpx.AsyncClient
    loop: asyncio.AbstractEventLoop | None = None


@asynccontextmanager
async def serve_app(app: Any, api_key: str, *, thread: bool = False) -> AsyncIterator[Served]:
    """`app` served by uvicorn on a free port: on the test's own event loop, or with
    `thread` on a loop of its own in a thread, as in a process of its own."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loop = asyncio.new_event_loop() if thread else None
    if loop is not None:
        runner = threading.Thread(
            target=loop.run_until_complete, args=(server.serve(),), daemon=True, name="api"
        )
        runner.start()
        alive = runner.is_alive
    else:
        task = asyncio.create_task(server.serve())
        alive = lambda: not task.done()  # noqa: E731
    while not server.started:
        assert alive(), "the API did not start"
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=60,
        ) as http:
            yield Served(http, loop)
    finally:
        server.should_exit = True
        if loop is not None:
            await asyncio.to_thread(runner.join, 10)
            loop.close()
        else:
            await task


async def loop_lag(loop: asyncio.AbstractEventLoop) -> float:
    """Seconds until `loop` (running in another thread) runs a callback given to it now."""
    here = asyncio.get_running_loop()
    answered: asyncio.Future[float] = here.create_future()
    asked = time.monotonic()

    def ran() -> None:
        lag = time.monotonic() - asked
        here.call_soon_threadsafe(answered.set_result, lag)

    loop.call_soon_threadsafe(ran)
    return await answered


@asynccontextmanager
async def api_on(
    settings: ApiSettings, sns: SnsClient | None = None, *, thread: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process-alike: `create_app(settings)` served by uvicorn over real HTTP
    (the tests' own stack keeps running beside it)."""
    async with api_served(settings, sns, thread=thread) as served:
        yield served.http


@asynccontextmanager
async def api_served(
    settings: ApiSettings, sns: SnsClient | None = None, *, thread: bool = False
) -> AsyncIterator[Served]:
    from api.main import create_app  # the app, only for the tests that serve one

    key = settings.api_key.get_secret_value()
    async with serve_app(create_app(settings, sns), key, thread=thread) as served:
        yield served


async def create_contact(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {
        "external_id": f"ext-{uuid.uuid4()}",
        "email": f"{uuid.uuid4().hex[:8]}@example.com",
        "first_name": "Ann",
        **fields,
    }
    response = await http.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def publish(http: httpx.AsyncClient, definition: dict[str, Any]) -> int:
    response = await http.post("/journeys", json=definition)
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


async def enrol(http: httpx.AsyncClient, key: str, *contact_ids: str) -> dict[str, Any]:
    response = await http.post(
        f"/journeys/{key}/enrolments", json={"contact_ids": list(contact_ids)}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def participant(http: httpx.AsyncClient, key: str, contact_id: str) -> dict[str, Any]:
    response = await http.get(f"/journeys/{key}/participants/{contact_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def delivered_event(
    http: httpx.AsyncClient, event_id: int, timeout: float = 20
) -> dict[str, Any]:
    """`GET /events/{id}` once the worker has delivered the event."""
    for _ in range(int(timeout * 10)):
        response = await http.get(f"/events/{event_id}")
        assert response.status_code == 200, response.text
        if (view := response.json())["status"] == "delivered":
            return dict(view)
        await asyncio.sleep(0.1)
    raise AssertionError(f"event {event_id} not delivered after {timeout}s: {view}")


async def wait_for_participant(
    http: httpx.AsyncClient, key: str, contact_id: str, timeout: float = 20
) -> dict[str, Any]:
    """The participant view once the contact has entered the journey."""
    for _ in range(int(timeout * 10)):
        response = await http.get(f"/journeys/{key}/participants/{contact_id}")
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 404, response.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{contact_id} never entered {key}")


async def wait_until_done(
    http: httpx.AsyncClient, key: str, contact_id: str, timeout: float = 30
) -> dict[str, Any]:
    for _ in range(int(timeout * 5)):
        view = await participant(http, key, contact_id)
        if view["status"] != "running":
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"participant still running after {timeout}s: {view}")


async def wait_for_step(
    http: httpx.AsyncClient, key: str, contact_id: str, step: str, timeout: float = 20
) -> dict[str, Any]:
    for _ in range(int(timeout * 5)):
        view = await participant(http, key, contact_id)
        if view["current_step"] == step:
            return view
        await asyncio.sleep(0.2)
    raise AssertionError(f"participant never reached {step!r}: {view}")


async def read_mail(
    http: httpx.AsyncClient, to: str, subject: str, timeout: float = 20
) -> EmailMessage:
    """The message to `to` with `subject`, fetched from the sink over the dev API."""
    for _ in range(int(timeout * 10)):
        listing = (await http.get("/dev/mail", params={"to": to})).json()
        for item in listing:
            if item["subject"] == subject:
                raw = await http.get(f"/dev/mail/{item['id']}")
                assert raw.headers["content-type"].startswith("message/rfc822")
                msg = message_from_bytes(raw.content, policy=policy.default)
                assert isinstance(msg, EmailMessage)
                return msg
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {to} with subject {subject!r}")


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def links_in(msg: EmailMessage) -> list[str]:
    return re.findall(r'<a\b[^>]*href="([^"]+)"', html_of(msg))


def pixel_in(msg: EmailMessage) -> str:
    match = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html_of(msg))
    assert match, "no open pixel"
    return match.group(1)


def first_format_token(payload: dict[str, Any], secret: str) -> str:
    """A tracking token as the first format made them (and mails sent before still
    hold): base64url(JSON payload) "." base64url(HMAC-SHA256), written out here from
    the format, not with the product's code."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())}"


async def query_selection(
    http: httpx.AsyncClient, key: str, field: str, value: Any, name: str = "Tagged"
) -> None:
    """A text contact field (declared if new) and a query selection of `field == value`."""
    response = await http.post("/contact-fields", json={"name": field, "type": "text"})
    assert response.status_code in (200, 201), response.text
    response = await http.post(
        "/selections",
        json={
            "key": key,
            "name": name,
            "type": "query",
            "query": {"field": field, "op": "eq", "value": value},
        },
    )
    assert response.status_code == 201, response.text


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With JOURNEYS_RECORD_HISTORIES=1, save the run's history under tests/histories/
    for the replay test (tests/test_replay.py)."""
    if os.environ.get("JOURNEYS_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (Path(__file__).parent / "histories" / f"{name}.json").write_text(history.to_json())


async def run_cli(api_url: str, api_key: str, *args: str) -> tuple[int, str, str]:
    """`journeys ARGS...` in a subprocess against the API: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "journeys.cli",
        *args,
        env={**os.environ, "JOURNEYS_API_URL": api_url, "JOURNEYS_API_KEY": api_key},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_ops(temporal_address: str, *args: str) -> tuple[int, str, str]:
    """`journeys ops ARGS...` in a subprocess against Temporal: exit code, stdout, stderr
    (wide, so that rich tables keep their columns on one line)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "journeys.cli",
        "ops",
        *args,
        env={**os.environ, "TEMPORAL_ADDRESS": temporal_address, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def eventually(
    call: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 20
) -> T:
    """`await call()` until `check` holds for what it answers (visibility is eventually
    consistent); its last answer."""
    for _ in range(int(timeout * 5)):
        found = await call()
        if check(found):
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"never held: {found}")
