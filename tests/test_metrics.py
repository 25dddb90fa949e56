"""Prometheus metrics on the real stack: an end-to-end run (enrol, mail, click, a
follow-up, a refused address) moves the product's counters by what happened and the
SDK's with it, scraped over HTTP from the API's `GET /metrics`; `journeys worker` serves
the same on its own port; the Grafana dashboard asks for metrics that exist."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from journeys import metrics
from journeys.definition import JourneyDefinition
from journeys.devstack import free_port
from journeys.models import JourneyInput
from tests.builders import journey
from tests.conftest import Stack
from tests.helpers import create_contact, enrol, links_in, publish, read_mail, wait_until_done
from workflows.journey import JourneyWorkflow

DASHBOARD = Path(__file__).parent.parent / "infra" / "grafana" / "journeys-dashboard.json"

# (sample name, labels) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(http: httpx.AsyncClient, url: str = "/metrics") -> Samples:
    response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def until(
    read: Callable[[], Awaitable[Samples]], holds: Callable[[Samples], bool], timeout: float = 20
) -> Samples:
    for _ in range(int(timeout * 5)):
        found = await read()
        if holds(found):
            return found
        await asyncio.sleep(0.2)
    return found  # the assertions below say what is missing


def clicked_and_refused(key: str) -> dict[str, Any]:
    """mail1 (with a follow-up on its click) -> wait for the click -> mail2."""
    return journey(
        key,
        steps={
            "mail1": {
                "type": "send_email",
                "subject": "Metrics for {{ contact.first_name }}",
                "html": '<p><a href="https://example.com/metrics">look</a></p>',
                "follow_ups": [
                    {
                        "key": "hot",
                        "on": "clicked",
                        "wait": "PT0M",
                        "start": "flag",
                        "steps": {
                            "flag": {"type": "update_contact", "set": {"hot": True}, "next": "end"},
                            "end": {"type": "end"},
                        },
                    }
                ],
                "next": "wait_click",
            },
            "wait_click": {
                "type": "wait_for_event",
                "event": "clicked",
                "message": "mail1",
                "timeout": "P1D",
                "on_event": "mail2",
                "on_timeout": "done",
            },
            "mail2": {
                "type": "send_email",
                "subject": "Thanks",
                "html": "<p>x</p>",
                "next": "done",
            },
            "done": {"type": "end"},
        },
    )


async def test_an_end_to_end_run_moves_the_counters(stack: Stack) -> None:
    http = stack.http
    key = f"metrics-{uuid.uuid4().hex[:8]}"
    await publish(http, clicked_and_refused(key))
    email = f"metrics-{uuid.uuid4().hex[:6]}@example.com"
    contact = await create_contact(http, email=email, first_name="Mia")
    # The dev sink refuses bounce* (550 5.1.1): the send is rejected, a hard bounce recorded.
    refused = await create_contact(http, email=f"bounce-{uuid.uuid4().hex[:6]}@example.com")
    before = await scrape(http)

    await enrol(http, key, contact, refused)
    msg = await read_mail(http, email, "Metrics for Mia")
    async with httpx.AsyncClient() as reader:
        assert (await reader.get(links_in(msg)[0])).status_code == 302
    assert (await wait_until_done(http, key, contact))["status"] == "completed"

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    journey_runs = {"workflow_type": "JourneyWorkflow"}
    after = await until(
        lambda: scrape(http),
        lambda s: (
            delta(s, "journeys_follow_ups_total", journey=key, trigger="clicked") >= 1
            and delta(s, "journeys_delivery_errors_total", channel="email", kind="hard_bounce") >= 1
            # The core reports a run's completion after the server has it: under load the
            # API can see the run completed before the metric is in.
            and delta(s, "temporal_workflow_completed_total", **journey_runs) >= 2
        ),
    )
    try:
        # The journey is this test's own: its counts are exact.
        assert delta(after, "journeys_enrolments_total", journey=key, status="enrolled") == 2
        assert delta(after, "journeys_follow_ups_total", journey=key, trigger="clicked") == 1
        # Other tests' runs may send or click meanwhile: at least what this one did.
        assert delta(after, "journeys_sends_total", channel="email", status="sent") >= 2
        assert delta(after, "journeys_sends_total", channel="email", status="rejected") >= 1
        assert delta(after, "journeys_events_total", kind="clicked") >= 1
        assert delta(after, "journeys_events_total", kind="sent") >= 1  # mail1 has follow-ups
        assert delta(after, "journeys_events_total", kind="delivery_error") >= 1
        assert (
            delta(after, "journeys_delivery_errors_total", channel="email", kind="hard_bounce") >= 1
        )
        assert delta(after, "journeys_dispatch_lag_seconds_count", source="message") >= 3
        assert value(
            after, "journeys_dispatch_lag_seconds_bucket", source="message", le="+Inf"
        ) == (value(after, "journeys_dispatch_lag_seconds_count", source="message"))

        # The SDK's, from the same endpoint (the worker runs in this process).
        assert delta(after, "temporal_workflow_completed_total", **journey_runs) >= 2  # + hot
        assert (
            delta(after, "temporal_workflow_task_execution_latency_seconds_count", **journey_runs)
            >= 4
        )
        assert delta(after, "temporal_workflow_task_schedule_to_start_latency_seconds_count") >= 4
        assert (
            delta(
                after,
                "temporal_activity_execution_latency_seconds_count",
                activity_type="send_email",
            )
            >= 3
        )
        assert {"temporal_sticky_cache_size", "temporal_sticky_cache_hit_total"} <= names(after)
        assert (
            value(after, "temporal_worker_task_slots_available", worker_type="ActivityWorker") > 0
        )
        assert value(after, "temporal_request_total", operation="StartWorkflowExecution") >= 2
        # And the process's own (prometheus-client's default collectors).
        assert value(after, "process_cpu_seconds_total") > 0
    finally:
        await http.delete(f"/journeys/{key}/participants/{refused}")  # it waits a day

    # What the dashboard asks of the SDK is what it exports (the failure counters, the
    # cache misses and evictions appear once one happens).
    queried = {m for m in dashboard_metrics() if m.startswith("temporal_")}
    rare = {m for m in queried if re.search(r"fail|miss|eviction", m)}
    exported = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names(after)}
    assert queried - rare <= exported, queried - rare - exported


async def test_the_api_reports_the_outbox_backlog(stack: Stack) -> None:
    """An event stuck in the outbox (its delivery failed, the next attempt far off) shows
    in the API's scrape: counted undelivered and failing, and its age as the oldest's;
    delivered, it no longer counts."""
    http = stack.http
    contact = await create_contact(http, email=f"outbox-{uuid.uuid4().hex[:6]}@example.com")
    event_id = await stack.pool.fetchval(
        """INSERT INTO contact_events (contact_id, kind, name, at, attempts, next_attempt_at,
                                       last_error)
           VALUES ($1, 'custom', 'metrics-probe', now() - interval '400 days', 1,
                   now() + interval '1 day', 'temporal unavailable: test')
           RETURNING id""",
        uuid.UUID(contact),
    )
    try:
        stuck = await scrape(http)
        assert value(stuck, "journeys_outbox_oldest_seconds", source="contact") >= 400 * 86400
        # Others may come and go meanwhile (the dispatcher's own work), never this one.
        assert value(stuck, "journeys_outbox_undelivered", source="contact") >= 1
        assert value(stuck, "journeys_outbox_failing", source="contact") >= 1
        assert {"message", "contact"} == {
            dict(labels)["source"]
            for name, labels in stuck
            if name == "journeys_outbox_undelivered"
        }
    finally:
        await stack.pool.execute(
            "UPDATE contact_events SET delivered_at = now() WHERE id = $1", event_id
        )
    delivered = await scrape(http)
    assert value(delivered, "journeys_outbox_oldest_seconds", source="contact") < 400 * 86400


async def test_an_unreadable_outbox_leaves_its_series_out() -> None:
    """The database away at a scrape: no outbox samples (unknown), not the last values."""

    class Away:
        async def fetch(self, *args: object, **kwargs: object) -> list[Any]:
            raise ConnectionRefusedError("database away")

    metrics.OUTBOX_UNDELIVERED.labels("message").set(3)  # as a scrape before left it
    await metrics.read_outbox(Away())  # type: ignore[arg-type]
    exposition = parse(generate_latest().decode())
    assert not {name for name, _ in exposition if name.startswith("journeys_outbox_")}


async def test_metrics_need_a_key_with_the_read_scope(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
    made = await stack.http.post(
        "/api-keys", json={"name": f"prometheus-{uuid.uuid4().hex[:6]}", "scopes": ["read"]}
    )
    assert made.status_code == 201, made.text
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {made.json()['key']}"}
    ) as scraper:
        response = await scraper.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert product_metric_names() <= families
    operation = (await stack.http.get("/openapi.json")).json()["paths"]["/metrics"]["get"]
    assert "text/plain" in operation["responses"]["200"]["content"]
    assert {"401", "403", "503"} <= operation["responses"].keys()


def product_metric_names() -> set[str]:
    return {family.name for m in metrics.PRODUCT_METRICS for family in m.describe()}


def dashboard_metrics() -> set[str]:
    """The metric families the dashboard's queries read."""
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    found = {m for expr in exprs for m in re.findall(r"\b((?:journeys|temporal)_\w+)", expr)}
    return {re.sub(r"_(bucket|count|sum)$", "", m) for m in found}


def test_the_dashboard_shows_every_product_metric_and_no_other() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in board["templating"]["list"] if v["type"] == "datasource"] == [
        "datasource"
    ]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    queried = {re.sub(r"_total$", "", m) for m in dashboard_metrics() if m.startswith("journeys_")}
    assert queried == product_metric_names()


def _database_url(base: str, name: str) -> str:
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}"))


async def test_journeys_worker_serves_its_metrics_on_a_port(
    stack: Stack, postgres_url: str, tmp_path: Path
) -> None:
    """`journeys worker` with JOURNEYS_METRICS_PORT: the SDK's and the product's metrics on
    one endpoint. Its own database and task queue, so that its dispatcher and its pollers
    leave the other tests' work alone."""
    database = f"metrics_{uuid.uuid4().hex[:8]}"
    await stack.pool.execute(f'CREATE DATABASE "{database}"')
    port, queue = free_port(), f"metrics-{uuid.uuid4().hex[:8]}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYS_", "DATABASE_"))}
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "journeys.cli", "worker"],
        env={
            **clean,
            "DATABASE_URL": _database_url(postgres_url, database),
            "TEMPORAL_ADDRESS": stack.settings.temporal_address,
            "SMTP_URL": stack.settings.smtp_url,
            "JOURNEYS_SECRET": "s",
            "JOURNEYS_TASK_QUEUE": queue,
            "JOURNEYS_METRICS_PORT": str(port),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with httpx.AsyncClient() as prometheus:

            async def read() -> Samples:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                try:
                    return await scrape(prometheus, url)
                except httpx.TransportError:
                    return {}

            polling = await until(
                read, lambda s: value(s, "temporal_num_pollers", task_queue=queue) > 0, 60
            )
            assert value(polling, "temporal_num_pollers", task_queue=queue) > 0
            assert value(polling, "temporal_worker_task_slots_available", task_queue=queue) > 0
            # The product's families are there before anything happened.
            families = {
                f.name for f in text_string_to_metric_families((await prometheus.get(url)).text)
            }
            assert product_metric_names() <= families

            # A run on its queue (a journey that ends at once) shows in its histograms.
            definition = JourneyDefinition.model_validate(
                journey("metrics-worker", steps={"done": {"type": "end"}})
            )
            await stack.temporal.execute_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    journey_key="metrics-worker",
                    version=1,
                    contact_id=str(uuid.uuid4()),
                    definition=definition,
                ),
                id=f"metrics-worker/{uuid.uuid4()}",
                task_queue=queue,
            )
            done = await until(
                read,
                lambda s: value(s, "temporal_workflow_completed_total", task_queue=queue) >= 1,
            )
            assert value(done, "temporal_workflow_completed_total", task_queue=queue) == 1
            assert (
                value(
                    done, "temporal_workflow_task_execution_latency_seconds_count", task_queue=queue
                )
                >= 1
            )
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(worker.wait, 45)
        except subprocess.TimeoutExpired:
            worker.kill()
            await asyncio.to_thread(worker.wait)
        log.close()
        await stack.pool.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
