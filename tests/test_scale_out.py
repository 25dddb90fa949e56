"""O5: two API processes and `journeys worker --processes 2` against one Temporal
server and one database: enrolment, sends, events, clicks, follow-ups and a recurring
run each happen exactly once, and both worker processes take part.

The processes are real `journeys api` / `journeys worker` subprocesses with a database
and a task queue of their own (the session's worker and dispatcher see neither).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from journeys.devstack import free_port
from journeys.mailsink import MailSink, list_mail
from tests.builders import journey
from tests.conftest import Stack
from tests.test_followups import PRICING

N = 8
KEY = "secret-key-of-the-scale-out-test"


def _mail(folder: Path) -> list[tuple[str, str, Path]]:
    return [(m["to"][0], m["subject"], folder / f"{m['id']}.eml") for m in list_mail(folder)]


async def _until(check: object, what: str, timeout: float = 60) -> None:
    for _ in range(int(timeout * 5)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what}")


@asynccontextmanager
async def _processes(
    env: dict[str, str], api_ports: list[int], home: Path
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(home / f"{name}.log", "wb") as log:  # the child keeps its own copy
            return subprocess.Popen(
                [sys.executable, "-m", "journeys.cli", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    procs = [
        start(f"api{i}", "api", "--host", "127.0.0.1", "--port", str(port))
        for i, port in enumerate(api_ports)
    ]
    procs.append(start("worker", "worker", "--processes", "2"))
    try:
        async with httpx.AsyncClient() as http:
            for port in api_ports:
                for _ in range(200):
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(
                        f"API on {port} never came up: {(home / 'api0.log').read_text()[-2000:]}"
                    )
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


async def test_two_apis_and_two_worker_processes_do_everything_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    database = f"scale_{tag}"
    await stack.pool.execute(f'CREATE DATABASE "{database}"')
    base = urlsplit(stack.settings.database_url)
    database_url = urlunsplit(base._replace(path=f"/{database}"))
    api_ports = [free_port(), free_port()]
    task_queue = f"scale-{tag}"
    async with MailSink(tmp_path / "mail", port=0) as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
        env.update(
            DATABASE_URL=database_url,
            TEMPORAL_ADDRESS=stack.settings.temporal_address,
            SMTP_URL=f"smtp://127.0.0.1:{sink.port}",
            JOURNEYS_API_KEY=KEY,
            JOURNEYS_SECRET="scale-out-secret",
            JOURNEYS_PUBLIC_URL=f"http://127.0.0.1:{api_ports[0]}",
            JOURNEYS_TASK_QUEUE=task_queue,
            JOURNEYS_LOG_LEVEL="warning",
        )
        async with (
            _processes(env, api_ports, tmp_path) as procs,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_ports[0]}",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            ) as one,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_ports[1]}",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            ) as two,
        ):
            # Two worker processes under the supervisor.
            supervisor = psutil.Process(procs[-1].pid)
            await _until(lambda: len(supervisor.children()) == 2, "two worker processes")
            apis = [one, two]
            key = f"scale-{tag}"
            published = await one.post(
                "/journeys",
                json=journey(
                    key,
                    start="welcome",
                    steps={
                        "welcome": {
                            "type": "send_email",
                            "subject": "Welcome",
                            "html": f'<p>See <a href="{PRICING}">prices</a></p>',
                            "follow_ups": [
                                {
                                    "key": "clicked",
                                    "on": "clicked",
                                    "link": PRICING,
                                    "wait": "PT0M",
                                    "start": "m",
                                    "steps": {
                                        "m": {
                                            "type": "send_email",
                                            "subject": "You looked at our prices",
                                            "html": "<p>Questions?</p>",
                                            "next": "end",
                                        },
                                        "end": {"type": "end"},
                                    },
                                }
                            ],
                            "next": "wait_order",
                        },
                        "wait_order": {
                            "type": "wait_for_event",
                            "event": "custom",
                            "name": "order_placed",
                            "timeout": "P1D",
                            "on_event": "thanks",
                            "on_timeout": "end",
                        },
                        "thanks": {
                            "type": "send_email",
                            "subject": "Thanks for your order",
                            "html": "<p>Thanks</p>",
                            "next": "end",
                        },
                        "end": {"type": "end"},
                    },
                ),
            )
            assert published.status_code == 201, published.text
            field = await one.post("/contact-fields", json={"name": "cohort", "type": "text"})
            assert field.status_code in (200, 201), field.text

            contacts: list[str] = []
            for i in range(N):
                made = await apis[i % 2].post(
                    "/contacts",
                    json={"email": f"p{i}-{tag}@example.com", "fields": {"cohort": tag}},
                )
                assert made.status_code == 201, made.text
                contacts.append(made.json()["id"])
            # Each contact enrolled twice, once through each API: one run each.
            for api in apis:
                enrolled = await api.post(
                    f"/journeys/{key}/enrolments", json={"contact_ids": contacts}
                )
                assert enrolled.status_code == 200, enrolled.text
            folder = sink.folder
            await _until(
                lambda: sum(s == "Welcome" for _, s, _ in _mail(folder)) >= N, "welcome mails"
            )

            # Clicks through both APIs (each link clicked twice), orders through both.
            for path in [p for _, subject, p in _mail(folder) if subject == "Welcome"]:
                msg = message_from_bytes(path.read_bytes(), policy=policy.default)
                html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
                link = re.search(r'href="([^"]+/t/c/[^"]+)"', html)
                assert link, html
                for api in apis:
                    target = urlsplit(link.group(1))
                    hit = await api.get(target.path, follow_redirects=False)
                    assert hit.status_code in (302, 303, 307), hit.text
            for contact in contacts:
                for api in apis:
                    posted = await api.post(
                        "/events",
                        json={"contact_id": contact, "name": "order_placed"},
                        headers={"Idempotency-Key": f"order-{contact}"},
                    )
                    # The second is the same event again: 200 with the first answer.
                    assert posted.status_code in (200, 202), posted.text

            # A recurring send to the same people.
            selection = await two.post(
                "/selections",
                json={
                    "key": f"cohort-{tag}",
                    "name": "Cohort",
                    "type": "query",
                    "query": {
                        "all": [
                            {"field": "cohort", "op": "eq", "value": tag},
                            {
                                "not": {
                                    "received": {"recurring": f"daily-{tag}"},
                                    "within": "P1D",
                                }
                            },
                        ]
                    },
                },
            )
            assert selection.status_code == 201, selection.text
            from bench.faults import daytime_zone

            recurring = await one.post(
                "/recurring-sends",
                json={
                    "key": f"daily-{tag}",
                    "name": "Daily",
                    "message": {"subject": "Today's news", "html": "<p>News</p>"},
                    "selection": f"cohort-{tag}",
                    "frequency": "daily",
                    "times": ["12:00"],
                    "time_zone": daytime_zone(),
                    "start_date": "2026-01-01",
                    "status": "live",
                },
            )
            assert recurring.status_code == 201, recurring.text
            await stack.temporal.get_schedule_handle(f"recurring/daily-{tag}").trigger()

            expected = {
                "Welcome": N,
                "You looked at our prices": N,
                "Thanks for your order": N,
                "Today's news": N,
            }

            def complete() -> bool:
                counts = Counter(s for _, s, _ in _mail(folder))
                return all(counts[s] >= n for s, n in expected.items())

            await _until(complete, "every mail", timeout=90)
            await asyncio.sleep(3)  # anything sent twice would arrive by now
            per_person = Counter((to, s) for to, s, _ in _mail(folder))
            assert set(per_person.values()) == {1}, [k for k, n in per_person.items() if n > 1]
            assert Counter(s for _, s, _ in _mail(folder)) == expected

            # Both worker processes did workflow work.
            conn = await asyncpg.connect(database_url)
            try:
                workflow_ids = [
                    r["workflow_id"]
                    for r in await conn.fetch(
                        "SELECT DISTINCT workflow_id FROM messages WHERE journey_key = $1", key
                    )
                ]
            finally:
                await conn.close()
            identities: set[str] = set()
            for workflow_id in workflow_ids:
                history = await stack.temporal.get_workflow_handle(workflow_id).fetch_history()
                identities |= {
                    e.workflow_task_completed_event_attributes.identity
                    for e in history.events
                    if e.HasField("workflow_task_completed_event_attributes")
                }
            pids = {p.pid for p in supervisor.children()}
            assert {int(i.split("@")[0]) for i in identities} == pids, identities
