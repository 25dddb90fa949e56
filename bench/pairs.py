"""The measurements: each pair runs its floor and then the product path with the
same N and the same client concurrency, on the same servers, in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.floor import SLEEP_WORKFLOW, THREE_STEPS_WORKFLOW, WAKE_SIGNAL
from bench.http import RawHttp
from bench.load import LoadResult, Progress, closed_loop, open_loop, wait_until
from bench.report import (
    DELIVERY_P99_TARGET_MS,
    RATIO_TARGETS,
    RSS_GROWTH_TARGET,
    TRACKING_P99_TARGET_MS,
    TRACKING_RATE,
    latency_summary,
    meets,
    pair_figures,
    rate,
    ratio,
)
from bench.stack import Stack

LANDING = "https://example.com/offer"
SUBJECT = "Hello {{ contact.first_name }}, your spring offer"
HTML = """<!doctype html>
<html><body style="font-family:sans-serif">
<h1>Hello {{ contact.first_name }}!</h1>
<p>Spring is here, and so is our best offer of the season. As a valued customer you
get early access before anyone else: pick any plan and the first three months are on us.</p>
<p><a href="https://example.com/offer">See the offer</a></p>
<p>Questions? Read the <a href="https://example.com/faq">answers to common questions</a>
or <a href="https://example.com/contact">write to us</a>; a person replies within a day.</p>
<p>Kind regards,<br>The Example team</p>
</body></html>
"""
LONG_WAIT = "P30D"
# Below this many cores busy (all processes of the stack together) the stack counts as idle.
QUIET_CORES = 0.25
# Counting a simple query over a million contacts (issue: under a second).
COUNT_TARGET_MS = 1000.0


def wait_journey(key: str) -> dict[str, Any]:
    """Enrol and sleep: the shape of the enrol and idle pairs."""
    return {
        "key": key,
        "name": "bench: sleep",
        "entry": {"type": "api"},
        "start": "nap",
        "steps": {
            "nap": {"type": "wait", "duration": LONG_WAIT, "next": "done"},
            "done": {"type": "end"},
        },
    }


def click_journey(key: str) -> dict[str, Any]:
    """Send, then wait for a click: the shape of the events pair."""
    return {
        "key": key,
        "name": "bench: send and wait for a click",
        "entry": {"type": "api"},
        "start": "mail",
        "steps": {
            "mail": {"type": "send_email", "subject": SUBJECT, "html": HTML, "next": "await_click"},
            "await_click": {
                "type": "wait_for_event",
                "event": "clicked",
                "message": "mail",
                "timeout": LONG_WAIT,
                "on_event": "done",
                "on_timeout": "done",
            },
            "done": {"type": "end"},
        },
    }


def steps_journey(key: str) -> dict[str, Any]:
    """Three steps without waits: send, update a field, end (the steps pair)."""
    return {
        "key": key,
        "name": "bench: send, update, end",
        "entry": {"type": "api"},
        "start": "mail",
        "steps": {
            "mail": {"type": "send_email", "subject": SUBJECT, "html": HTML, "next": "mark"},
            "mark": {"type": "update_contact", "set": {"bench_done": True}, "next": "done"},
            "done": {"type": "end"},
        },
    }


@dataclass
class Bench:
    stack: Stack
    http: httpx.AsyncClient  # setup calls
    raw: RawHttp  # measured calls: far less client CPU per request
    pool: asyncpg.Pool
    progress: Progress
    n: int
    concurrency: int
    paced_n: int
    idle_levels: tuple[int, int]
    warmup: int
    bulk_n: int
    count_n: int
    console_n: int
    floors: bool = True  # False: the bulk pair measures the product only (a long run)

    @property
    def fc(self) -> Any:
        assert self.stack.floor_client is not None
        return self.stack.floor_client

    @property
    def client(self) -> Any:
        assert self.stack.client is not None
        return self.stack.client

    def key(self, name: str) -> str:
        return f"bench-{name}-{self.stack.run_id}"

    # --- setup (not measured) --------------------------------------------------------------

    async def new_contacts(
        self, count: int, fields: Callable[[int], dict[str, Any]] | None = None
    ) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        records = [
            (cid, f"bench-{cid}", f"bench-{cid.hex[:12]}@example.com", f"Reader{i}")
            for i, cid in enumerate(ids)
        ]
        async with self.pool.acquire() as conn:
            if fields is None:
                await conn.copy_records_to_table(
                    "contacts",
                    records=records,
                    columns=["id", "external_id", "email", "first_name"],
                )
            else:  # COPY has no binary form of jsonb here: free fields go as JSON text
                columns: list[list[Any]] = [list(c) for c in zip(*records, strict=True)]
                await conn.execute(
                    """INSERT INTO contacts (id, external_id, email, first_name, fields)
                       SELECT a, b, c, d, e::jsonb FROM unnest(
                           $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                           AS t(a, b, c, d, e)""",
                    *columns,
                    [json.dumps(fields(i)) for i in range(count)],
                )
        return ids

    async def publish(self, definition: dict[str, Any]) -> str:
        response = await self.http.post("/journeys", json=definition)
        if response.status_code != 201:
            raise RuntimeError(f"publishing {definition['key']} failed: {response.text}")
        return str(definition["key"])

    async def enrol_bulk(self, key: str, contacts: list[uuid.UUID]) -> None:
        for start in range(0, len(contacts), 10_000):
            chunk = [str(c) for c in contacts[start : start + 10_000]]
            response = await self.http.post(
                f"/journeys/{key}/enrolments", json={"contact_ids": chunk}, timeout=900
            )
            response.raise_for_status()

    async def enrol_one(self, key: str, contact: uuid.UUID) -> None:
        status, body = await self.raw.post_json(
            f"/journeys/{key}/enrolments", {"contact_ids": [str(contact)]}
        )
        if status != 200:
            raise RuntimeError(f"enrolment answered {status}: {body}")
        if body["enrolments"][0]["status"] != "enrolled":
            raise RuntimeError("contact was already enrolled")

    async def count(self, query: str) -> int:
        return int((await self.client.count_workflows(query)).count)

    async def settle(self, task_queue: str, sample: list[str], timeout: float) -> float:
        """Wait until no workflow task waits on the queue and `sample` have none pending."""
        quiet = 0

        async def settled() -> bool:
            nonlocal quiet
            if await self.stack.backlog(task_queue) > 0:
                quiet = 0
                return False
            for wid in sample:
                desc = await self.client.get_workflow_handle(wid).describe()
                if desc.raw_description.HasField("pending_workflow_task"):
                    quiet = 0
                    return False
            quiet += 1
            return quiet >= 2

        return await wait_until(settled, timeout=timeout, interval=0.5, what="workflows to settle")

    async def quiesce(self, timeout: float = 180) -> float:
        """Wait until no workflow task waits and the stack is near idle, so that leftover
        work of one phase (workflow tasks, activities) does not run during the next."""
        start = time.monotonic()
        calm = 0
        before, t_before = self.stack.cpu_snapshot(), time.monotonic()
        while time.monotonic() - start < timeout:
            await asyncio.sleep(0.3)
            after, t_after = self.stack.cpu_snapshot(), time.monotonic()
            busy = sum(
                v
                for k, v in self.stack.cpu_delta(before, after).items()
                if k not in ("bench", "others")
            ) / (t_after - t_before)
            before, t_before = after, t_after
            backlog = 0
            for queue in (self.stack.task_queue, self.stack.floor_task_queue):
                backlog += await self.stack.backlog(queue)
            calm = calm + 1 if backlog == 0 and busy < QUIET_CORES else 0
            if calm >= 2:
                return time.monotonic() - start
        self.progress.note(f"the stack is still busy after {timeout:.0f}s; measuring anyway")
        return time.monotonic() - start

    # --- measuring -------------------------------------------------------------------------

    async def measure(
        self,
        label: str,
        n: int,
        run: Callable[[], Awaitable[LoadResult]],
        ops: int | None = None,
    ) -> tuple[LoadResult, dict[str, Any]]:
        """Run a load with progress, CPU accounting per process, and a summary."""
        await self.quiesce()
        _settle_heap()
        self.progress.phase(label, n)
        before = self.stack.cpu_snapshot()
        result = await run()
        detail = result.summary()
        # What CPU is counted per: each operation, or each item of one bulk operation.
        shown = result.rate if ops is None else rate(ops if result.ok else 0, result.elapsed)
        ops = result.ok if ops is None else ops
        self._cpu(detail, before, ops)
        errors = f", {result.errors} errors ({result.first_error})" if result.errors else ""
        lat = detail["latency"]
        self.progress.finish(
            f"{_fmt(shown)}/s, p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms{errors}"
        )
        # Work the operations left behind (workflow tasks, activities) is part of their cost.
        detail["followup_seconds"] = round(await self.quiesce(), 3)
        detail["cpu_ms_per_op_with_followup"] = {
            k: round(v * 1000 / ops, 3) if ops else None
            for k, v in self.stack.cpu_delta(before, self.stack.cpu_snapshot()).items()
        }
        return result, detail

    def _cpu(self, detail: dict[str, Any], before: dict[str, float], ops: int) -> None:
        cpu = self.stack.cpu_delta(before, self.stack.cpu_snapshot())
        detail["cpu_seconds"] = cpu
        detail["cpu_ms_per_op"] = {
            k: round(v * 1000 / ops, 3) if ops else None for k, v in cpu.items()
        }

    async def warm(self, what: str, count: int, op: Callable[[int], Awaitable[Any]]) -> None:
        self.progress.phase(f"{what}: warm-up", count)
        result = await closed_loop(count, self.concurrency, op, self.progress)
        self.progress.finish()
        if result.errors:
            raise RuntimeError(f"{what}: warm-up failed: {result.first_error}")


def _settle_heap() -> None:
    """Keep the garbage collector from rescanning everything earlier phases left behind:
    the bench client's own cost per operation should not grow as the run goes on."""
    gc.collect()
    gc.freeze()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _url_path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path


# --- enrol --------------------------------------------------------------------------------


async def pair_enrol(b: Bench) -> dict[str, Any]:
    n, c, w = b.n, b.concurrency, b.warmup
    tq = b.stack.floor_task_queue

    def floor_start(prefix: str) -> Callable[[int], Awaitable[Any]]:
        async def start(i: int) -> None:
            await b.fc.start_workflow(
                SLEEP_WORKFLOW, id=f"bench-floor/sleep/{prefix}{i}", task_queue=tq
            )

        return start

    await b.warm("enrol floor", w, floor_start("warm-"))
    await b.quiesce()
    size0 = await _db_bytes(b)
    floor, floor_detail = await b.measure(
        f"enrol floor: start {n} bare workflows, {c} in flight",
        n,
        lambda: closed_loop(n, c, floor_start(""), b.progress),
    )
    size1 = await _db_bytes(b)

    key = await b.publish(wait_journey(b.key("enrol")))
    contacts = await b.new_contacts(w + 2 * n)
    warm, single, bulk = contacts[:w], contacts[w : w + n], contacts[w + n :]
    await b.warm("enrol product", w, lambda i: b.enrol_one(key, warm[i]))
    await b.quiesce()
    size2 = await _db_bytes(b)
    product, product_detail = await b.measure(
        f"enrol product: {n} POST /enrolments of 1 contact, {c} in flight",
        n,
        lambda: closed_loop(n, c, lambda i: b.enrol_one(key, single[i]), b.progress),
    )
    size3 = await _db_bytes(b)

    async def one_bulk_call() -> LoadResult:
        result = LoadResult(1)
        start = time.perf_counter()
        poller = asyncio.create_task(_poll_count(b, f"JourneyKey = '{key}'", w + n, n))
        try:
            await b.enrol_bulk(key, bulk)
        except Exception as exc:
            result._failed(exc)
        else:
            result.latencies.append(time.perf_counter() - start)
            b.progress.set(n)
        finally:
            poller.cancel()
        result.elapsed = time.perf_counter() - start
        return result

    bulk_result, bulk_detail = await b.measure(
        f"enrol product: one POST /enrolments of {n} contacts", n, one_bulk_call, ops=n
    )
    bulk_rate = rate(n, bulk_result.elapsed) if bulk_result.ok else None
    bulk_detail["per_second"] = bulk_rate
    from journeys.enrolment import START_CONCURRENCY

    return {
        "unit": "enrolments/s",
        **pair_figures(floor.rate, product.rate, RATIO_TARGETS["enrol"]),
        "product_bulk": bulk_rate,
        "ratio_bulk": ratio(bulk_rate, floor.rate),
        "met_bulk": meets(ratio(bulk_rate, floor.rate), RATIO_TARGETS["enrol"]),
        "bulk_server_concurrency": START_CONCURRENCY,
        # Storage per started (and then sleeping) workflow, once its first task ran.
        "bytes_per_workflow": {
            side: {
                k: round((after[k] - before[k]) / n, 1) if after[k] is not None else None
                for k in ("temporal_db_bytes", "postgres_bytes")
            }
            for side, before, after in (("floor", size0, size1), ("product", size2, size3))
        },
        "journey": key,
        "floor_detail": floor_detail,
        "product_detail": product_detail,
        "product_bulk_detail": bulk_detail,
    }


# --- bulk ---------------------------------------------------------------------------------


async def _query_selection(
    b: Bench, key: str, field: str, value: str, *also: dict[str, Any]
) -> None:
    declared = await b.http.post("/contact-fields", json={"name": field, "type": "text"})
    declared.raise_for_status()
    query: dict[str, Any] = {"field": field, "op": "eq", "value": value}
    created = await b.http.post(
        "/selections",
        json={
            "key": key,
            "name": key,
            "type": "query",
            "query": {"all": [query, *also]} if also else query,
        },
    )
    created.raise_for_status()


async def _timed_once(work: Callable[[], Awaitable[None]]) -> LoadResult:
    """One long piece of work (an operation, a run) as a load of one, timed."""
    result = LoadResult(1)
    start = time.perf_counter()
    try:
        await work()
    except Exception as exc:
        result._failed(exc)
    else:
        result.latencies.append(time.perf_counter() - start)
    result.elapsed = time.perf_counter() - start
    return result


async def pair_bulk(b: Bench) -> dict[str, Any]:
    """A selection of N contacts enrolled by one operation, against N raw client starts
    with the operation's own concurrency."""
    from journeys.enrolment import START_CONCURRENCY

    n, tq = b.bulk_n, b.stack.floor_task_queue

    async def floor_start(i: int) -> None:
        await b.fc.start_workflow(SLEEP_WORKFLOW, id=f"bench-floor/bulk/{i}", task_queue=tq)

    floor_rate: float | None = None
    floor_detail: dict[str, Any] = {}
    if b.floors:
        floor, floor_detail = await b.measure(
            f"bulk floor: start {n} bare workflows, {START_CONCURRENCY} in flight",
            n,
            lambda: closed_loop(n, START_CONCURRENCY, floor_start, b.progress),
        )
        floor_rate = floor.rate

    batch = b.stack.run_id
    await b.new_contacts(n, lambda i: {"bench_batch": batch})
    selection = b.key("bulk")
    await _query_selection(b, selection, "bench_batch", batch)
    key = await b.publish(wait_journey(b.key("bulk")))
    outcome: dict[str, Any] = {}

    async def one_operation() -> None:
        started = await b.http.post(f"/journeys/{key}/enrolments", json={"selection": selection})
        started.raise_for_status()
        operation_id = started.json()["operation_id"]
        while True:
            op = (await b.http.get(f"/operations/{operation_id}")).json()
            b.progress.set(op["done"])
            if op["status"] != "running":
                break
            await asyncio.sleep(0.25)
        outcome.update(op)
        if op["status"] != "completed" or op["counts"] != {"enrolled": n}:
            raise RuntimeError(f"the operation ended {op['status']}: {op['counts']}")

    product, product_detail = await b.measure(
        f"bulk product: enrol a selection of {n} (one operation)",
        n,
        lambda: _timed_once(one_operation),
        ops=n,
    )
    product_rate = rate(n, product.elapsed) if product.ok else None
    return {
        "unit": "enrolments/s",
        **pair_figures(floor_rate, product_rate, RATIO_TARGETS["bulk"]),
        "n": n,
        "server_concurrency": START_CONCURRENCY,
        "operation_seconds": round(product.elapsed, 2),
        "operation": {k: outcome.get(k) for k in ("id", "status", "total", "counts")},
        "journey": key,
        "floor_detail": floor_detail,
        "product_detail": product_detail,
    }


async def measure_count(b: Bench) -> dict[str, Any]:
    """`GET /selections/{key}/count` of a one-field query over `count_n` contacts (a
    third of them match), the contacts written by the bench first."""
    total = b.count_n
    written = 0
    b.progress.phase(f"selection count: writing {total:,} contacts", total)
    while written < total:
        chunk = min(100_000, total - written)
        await b.new_contacts(chunk, lambda i: {"bench_country": ("NL", "BE", "DE")[i % 3]})
        written += chunk
        b.progress.set(written)
    b.progress.finish()
    async with b.pool.acquire() as conn:
        await conn.execute("ANALYZE contacts")
    selection = b.key("count-nl")
    await _query_selection(b, selection, "bench_country", "NL")
    timings, answers = [], []
    for _ in range(5):
        start = time.perf_counter()
        response = await b.http.get(f"/selections/{selection}/count", timeout=120)
        timings.append(time.perf_counter() - start)
        response.raise_for_status()
        answers.append(response.json()["count"])
    contacts = await b.pool.fetchval("SELECT count(*) FROM contacts")
    median_ms = round(sorted(timings)[len(timings) // 2] * 1000, 1)
    b.progress.note(f"selection count over {contacts:,} contacts: {median_ms} ms (median of 5)")
    return {
        "contacts": contacts,
        "matching": answers[-1],
        "expected_at_least": (total + 2) // 3,
        "median_ms": median_ms,
        "timings_ms": [round(t * 1000, 1) for t in timings],
        "target_ms": COUNT_TARGET_MS,
        "met": median_ms < COUNT_TARGET_MS if total >= 1_000_000 else None,
    }


async def _poll_count(b: Bench, query: str, base: int, total: int) -> None:
    """Progress for a long call: how many of its workflows visibility shows so far."""
    while True:
        await asyncio.sleep(2)
        try:
            b.progress.set(max(0, min(total, await b.count(query) - base)))
        except Exception:
            pass


# --- events -------------------------------------------------------------------------------


async def pair_events(b: Bench) -> dict[str, Any]:
    n, c, m, w = b.n, b.concurrency, b.paced_n, b.warmup
    tq = b.stack.floor_task_queue

    def signal(prefix: str) -> Callable[[int], Awaitable[Any]]:
        async def hit(i: int) -> None:
            handle = b.fc.get_workflow_handle(f"bench-floor/sleep/{prefix}{i}")
            await handle.signal(WAKE_SIGNAL, "clicked")

        return hit

    # The enrol pair left n + w sleeping bare workflows; the paced run needs m more.
    b.progress.phase(f"events floor: setup, {m} more sleeping bare workflows", m)

    async def start_paced(i: int) -> None:
        await b.fc.start_workflow(SLEEP_WORKFLOW, id=f"bench-floor/sleep/paced-{i}", task_queue=tq)

    await closed_loop(m, c, start_paced, b.progress)
    b.progress.finish()
    await b.warm("events floor", w, signal("warm-"))
    floor, floor_detail = await b.measure(
        f"events floor: signal {n} sleeping workflows, {c} in flight",
        n,
        lambda: closed_loop(n, c, signal(""), b.progress),
    )
    _, floor_paced_detail = await b.measure(
        f"events floor: {m} signals at {TRACKING_RATE:.0f}/s",
        m,
        lambda: open_loop(m, TRACKING_RATE, signal("paced-"), b.progress),
    )

    key = await b.publish(click_journey(b.key("events")))
    total = w + n + m
    contacts = await b.new_contacts(total)
    b.progress.phase(f"events product: setup, {total} participants sent a mail and waiting", total)
    await b.enrol_bulk(key, contacts)

    async def all_sent() -> bool:
        sent = await b.pool.fetchval(
            "SELECT count(*) FROM messages WHERE journey_key = $1 AND status = 'sent'", key
        )
        b.progress.set(int(sent))
        return bool(sent >= total)

    await wait_until(all_sent, timeout=120 + total / 2, interval=0.5, what="the mails to be sent")
    sample = [f"journey/{key}/{cid}" for cid in contacts[-5:]]
    await b.settle(b.stack.task_queue, sample, timeout=120)
    b.progress.finish()

    from journeys.tracking import click_url

    rows = await b.pool.fetch(
        "SELECT id FROM messages WHERE journey_key = $1 AND status = 'sent' ORDER BY id", key
    )
    ids = [r["id"] for r in rows]
    paths = [_url_path(click_url(b.stack.api_url, b.stack.secret, str(i), LANDING)) for i in ids]
    warm_paths, loop_paths, paced_paths = paths[:w], paths[w : w + n], paths[w + n :]
    loop_ids, paced_ids = ids[w : w + n], ids[w + n :]

    def click(batch: list[str]) -> Callable[[int], Awaitable[Any]]:
        async def hit(i: int) -> None:
            status, _ = await b.raw.get(batch[i])
            if status != 302:
                raise RuntimeError(f"tracking hit answered {status}")

        return hit

    async def delivered(batch: list[uuid.UUID]) -> list[tuple[datetime, datetime]]:
        """(hit stored, delivered to its run) of each click on the batch's messages, once
        the dispatcher has delivered them all (or after a timeout: those delivered)."""
        query = """SELECT at, delivered_at FROM message_events
                   WHERE message_id = ANY($1::uuid[]) AND kind = 'clicked'"""

        async def all_delivered() -> bool:
            found = await b.pool.fetch(query + " AND delivered_at IS NOT NULL", batch)
            return len(found) >= len(batch)

        with contextlib.suppress(TimeoutError):
            await wait_until(all_delivered, timeout=60 + len(batch) / 10, interval=0.1)
        found = await b.pool.fetch(query + " AND delivered_at IS NOT NULL", batch)
        return [(r["at"], r["delivered_at"]) for r in found]

    await b.warm("events product", w, click(warm_paths))
    await delivered(ids[:w])

    async def hits_and_deliveries() -> LoadResult:
        result = await closed_loop(n, c, click(loop_paths), b.progress)
        times = await delivered(loop_ids)
        # Throughput counts from the first hit to the last click in its run.
        if len(times) == n:
            first = min(at for at, _ in times)
            last = max(done for _, done in times)
            result.delivered_elapsed = (last - first).total_seconds()
        return result

    product, product_detail = await b.measure(
        f"events product: {n} GET /t/c/... delivered to their runs, {c} in flight",
        n,
        hits_and_deliveries,
    )
    delivered_rate = rate(n, product.delivered_elapsed) if product.delivered_elapsed else None
    _, product_paced_detail = await b.measure(
        f"events product: {m} GET /t/c/... at {TRACKING_RATE:.0f}/s",
        m,
        lambda: open_loop(m, TRACKING_RATE, click(paced_paths), b.progress),
    )
    paced_times = await delivered(paced_ids)
    to_workflow = latency_summary([(done - at).total_seconds() for at, done in paced_times])

    # The figure counts only if the clicks reached the journeys: all of them move on and end.
    done_query = f"JourneyKey = '{key}' AND ExecutionStatus = 'Completed'"
    b.progress.phase("events product: participants leaving after the click", total)

    async def all_done() -> bool:
        done = await b.count(done_query)
        b.progress.set(done)
        return done >= total

    try:
        await wait_until(all_done, timeout=60 + total / 10, interval=0.5, what="clicks to arrive")
    except TimeoutError:
        pass
    completed = await b.count(done_query)
    b.progress.finish()
    p99 = product_paced_detail["latency"]["p99_ms"]
    return {
        "unit": "signals/s",
        # The product: clicks taken over HTTP and delivered into their runs.
        **pair_figures(floor.rate, delivered_rate, RATIO_TARGETS["events"]),
        "hits_per_second": product.rate,
        "latency": {"floor": floor_detail["latency"], "product": product_detail["latency"]},
        "paced": {
            "rate": TRACKING_RATE,
            "n": m,
            "floor": floor_paced_detail["latency"],
            "product": product_paced_detail["latency"],
            "target_p99_ms": TRACKING_P99_TARGET_MS,
            "met": meets(p99, TRACKING_P99_TARGET_MS, at_most=True),
            "to_workflow": to_workflow,
            "to_workflow_delivered": len(paced_times),
            "to_workflow_target_p99_ms": DELIVERY_P99_TARGET_MS,
            "to_workflow_met": meets(to_workflow["p99_ms"], DELIVERY_P99_TARGET_MS, at_most=True)
            if len(paced_times) == m
            else False,
        },
        "journey": key,
        "participants_completed_after_click": completed,
        "participants": total,
        "floor_detail": floor_detail,
        "floor_paced_detail": floor_paced_detail,
        "product_detail": product_detail,
        "product_paced_detail": product_paced_detail,
    }


# --- steps --------------------------------------------------------------------------------


async def _completions(
    b: Bench, label: str, n: int, start_one: Callable[[int], Awaitable[Any]], done_query: str
) -> tuple[float | None, dict[str, Any]]:
    """Start n workflows (closed loop) and time until visibility shows all of them closed.

    The end is the latest CloseTime the server recorded, so polling does not round it.
    """
    c = b.concurrency
    await b.quiesce()
    _settle_heap()
    base = await b.count(done_query)
    b.progress.phase(label, n)
    before = b.stack.cpu_snapshot()
    wall0 = time.time()
    started = await closed_loop(n, c, start_one, b.progress)
    start_seconds = time.time() - wall0
    b.progress.finish(f"started {started.ok}, {_fmt(started.rate)}/s")
    b.progress.phase(f"{label}: completions", started.ok)

    async def done() -> bool:
        count = await b.count(done_query) - base
        b.progress.set(count)
        return count >= started.ok

    finished = True
    try:
        await wait_until(done, timeout=120 + n / 2, interval=0.5, what="completions")
    except TimeoutError:
        finished = False
    completed = await b.count(done_query) - base
    last_close: datetime | None = None
    async for wf in b.client.list_workflows(done_query):
        if wf.start_time.timestamp() >= wall0 - 1 and wf.close_time is not None:
            last_close = wf.close_time if last_close is None else max(last_close, wf.close_time)
    seconds = (last_close.timestamp() - wall0) if last_close else time.time() - wall0
    detail: dict[str, Any] = {
        "n": n,
        "started": started.ok,
        "start_errors": started.errors,
        "first_error": started.first_error,
        "completed": completed,
        "all_completed": finished,
        "start_seconds": round(start_seconds, 3),
        "start_per_second": started.rate,
        "seconds": round(seconds, 3),
        "per_second": rate(completed, seconds),
        "start_latency": started.summary()["latency"],
    }
    b._cpu(detail, before, completed)
    b.progress.finish(f"{_fmt(detail['per_second'])} completions/s")
    return detail["per_second"], detail


async def pair_steps(b: Bench) -> dict[str, Any]:
    n, w = b.n, b.warmup
    tq = b.stack.floor_task_queue
    floor_done = (
        f"WorkflowType = '{THREE_STEPS_WORKFLOW}' AND TaskQueue = '{tq}' "
        "AND ExecutionStatus = 'Completed'"
    )

    def floor_start(prefix: str) -> Callable[[int], Awaitable[Any]]:
        async def start(i: int) -> None:
            await b.fc.start_workflow(
                THREE_STEPS_WORKFLOW, id=f"bench-floor/steps/{prefix}{i}", task_queue=tq
            )

        return start

    await b.warm("steps floor", w, floor_start("warm-"))
    await wait_until(
        lambda: _at_least(b, floor_done, w), timeout=120, what="floor warm-up to complete"
    )
    floor_rate, floor_detail = await _completions(
        b, f"steps floor: {n} workflows of 3 no-op activities", n, floor_start(""), floor_done
    )

    key = await b.publish(steps_journey(b.key("steps")))
    contacts = await b.new_contacts(w + n)
    product_done = f"JourneyKey = '{key}' AND ExecutionStatus = 'Completed'"
    await b.warm("steps product", w, lambda i: b.enrol_one(key, contacts[i]))
    await wait_until(
        lambda: _at_least(b, product_done, w), timeout=120, what="product warm-up to complete"
    )
    product_rate, product_detail = await _completions(
        b,
        f"steps product: {n} participants through send, update, end",
        n,
        lambda i: b.enrol_one(key, contacts[w + i]),
        product_done,
    )
    # The same again with a second worker process beside the first (O5): what a
    # second core's worth of worker buys on this machine.
    more = await b.new_contacts(n)
    await b.stack.start_worker("worker2")
    try:
        two_rate, two_detail = await _completions(
            b,
            f"steps product, two worker processes: {n} more participants",
            n,
            lambda i: b.enrol_one(key, more[i]),
            product_done,
        )
    finally:
        b.stack.stop_proc("worker2")
    failed = await b.count(f"JourneyKey = '{key}' AND ExecutionStatus = 'Failed'")
    return {
        "unit": "completions/s",
        **pair_figures(floor_rate, product_rate, RATIO_TARGETS["steps"]),
        "product_two_workers": two_rate,
        "two_workers_gain": ratio(two_rate, product_rate),
        "two_workers_detail": two_detail,
        "journey": key,
        "product_failed": failed,
        "floor_detail": floor_detail,
        "product_detail": product_detail,
    }


async def _at_least(b: Bench, query: str, count: int) -> bool:
    return await b.count(query) >= count


# --- mail ---------------------------------------------------------------------------------


# The longest line read from a mail side.
RESULT_LINE_LIMIT = 16 * 1024 * 1024


async def _mail_side(
    b: Bench, side: str, extra: list[str], cpu: dict[str, float], n: int | None = None
) -> LoadResult:
    """Run one side in `python -m bench.mailpair` and read its result (`n` messages, the
    bench's n by default)."""
    n = n or b.n
    argv = [
        sys.executable,
        "-m",
        "bench.mailpair",
        side,
        "--n",
        str(n),
        "--concurrency",
        str(b.concurrency),
        "--warmup",
        str(b.warmup),
        "--smtp-url",
        b.stack.smtp_url,
        *extra,
    ]
    log_path = b.stack.home / f"mail-{side}.log"
    summary: dict[str, Any] | None = None
    with open(log_path, "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            # The RESULT line carries every latency: 20,000 of them pass the default 64 kB.
            limit=RESULT_LINE_LIMIT,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(600):
                async for line in proc.stdout:
                    text = line.decode().strip()
                    if text.startswith("P "):
                        b.progress.set(int(text[2:]))
                    elif text.startswith("RESULT "):
                        summary = json.loads(text.removeprefix("RESULT "))
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if summary is None:
        raise RuntimeError(f"mail {side} exited with {proc.returncode}; see {log_path}")
    cpu["mail_client"] = float(summary["cpu_seconds"])
    b.progress.set(int(summary["ok"]) + int(summary["errors"]))
    return LoadResult(
        n=n,
        elapsed=float(summary["seconds"]),
        latencies=[float(x) for x in summary["latencies"]],
        errors=int(summary["errors"]),
        first_error=summary["first_error"],
    )


async def pair_mail(b: Bench) -> dict[str, Any]:
    """Each side sends from a fresh process of its own, as the product does from its worker."""
    n, c = b.n, b.concurrency
    sides: dict[str, tuple[LoadResult, dict[str, Any]]] = {}
    contacts = await b.new_contacts(b.warmup + n)
    product_args = [
        "--database-url",
        b.stack.database_url,
        "--secret",
        b.stack.secret,
        "--public-url",
        b.stack.api_url,
        "--key",
        b.key("mail"),
        "--contacts",
        ",".join(str(x) for x in contacts),
    ]
    for side, label, extra in (
        ("floor", f"pre-rendered messages, aiosmtplib over {min(c, n)} open connections", []),
        ("floor-new-connection", f"the same, a new connection per message, {c} in flight", []),
        ("product", f"sends through EmailActivities.send_email, {c} in flight", product_args),
    ):
        cpu: dict[str, float] = {}

        def run(side: str = side, extra: list[str] = extra, cpu: dict[str, float] = cpu) -> Any:
            return _mail_side(b, side, extra, cpu)

        result, detail = await b.measure(f"mail {side}: {n} {label}", n, run)
        if result.ok:
            # The side's process is not watched by name: move its CPU out of `others`.
            per_op = round(cpu["mail_client"] * 1000 / result.ok, 3)
            for key in ("cpu_ms_per_op", "cpu_ms_per_op_with_followup"):
                figures = detail[key]
                figures["mail_client"] = per_op
                figures["others"] = round((figures.get("others") or 0.0) - per_op, 3)
        sides[side] = (result, detail)
    floor, fresh, product = (sides[k][0] for k in ("floor", "floor-new-connection", "product"))
    return {
        "unit": "messages/s",
        **pair_figures(floor.rate, product.rate, RATIO_TARGETS["mail"]),
        "floor_new_connection": fresh.rate,
        "ratio_to_new_connection": ratio(product.rate, fresh.rate),
        "floor_detail": sides["floor"][1],
        "floor_new_connection_detail": sides["floor-new-connection"][1],
        "product_detail": sides["product"][1],
        "note": "each side runs in a fresh process; mail_client is its CPU in the measured loop",
    }


# --- recurring ----------------------------------------------------------------------------


async def pair_recurring(b: Bench) -> dict[str, Any]:
    """One run of a live recurring send to a selection of N contacts (freeze, then send
    through the send path), against N pre-rendered messages over open connections."""
    from bench.faults import daytime_zone

    n = b.bulk_n
    cpu: dict[str, float] = {}
    floor, floor_detail = await b.measure(
        f"recurring floor: {n} pre-rendered messages over {min(b.concurrency, n)} connections",
        n,
        lambda: _mail_side(b, "floor", [], cpu, n),
    )
    batch = f"{b.stack.run_id}-recurring"
    await b.new_contacts(n, lambda i: {"bench_batch": batch})
    key = b.key("recurring")
    exclusion = {"not": {"received": {"recurring": key}, "within": "P1D"}}
    await _query_selection(b, key, "bench_batch", batch, exclusion)
    created = await b.http.post(
        "/recurring-sends",
        json={
            "key": key,
            "name": "Bench recurring send",
            "message": {"subject": SUBJECT, "html": HTML},
            "selection": key,
            "frequency": "daily",
            "times": ["12:00"],
            "time_zone": daytime_zone(),
            "start_date": "2026-01-01",
            "status": "live",
        },
    )
    created.raise_for_status()
    outcome: dict[str, Any] = {}

    async def one_run() -> None:
        await b.client.get_schedule_handle(f"recurring/{key}").trigger()
        polls = 0
        while True:
            row = await b.pool.fetchrow(
                "SELECT id, status, counts FROM recurring_runs WHERE recurring_key = $1", key
            )
            if row is not None:
                if row["status"] != "running":
                    break
                if polls % 4 == 0:
                    # Counting the run's done targets reads all of them (8 ms at 20,000):
                    # the progress line every 2 s, so that the bench's own queries cost
                    # the product's PostgreSQL little.
                    done = await b.pool.fetchval(
                        """SELECT count(*) FROM recurring_targets
                           WHERE run_id = $1 AND status <> 'send'""",
                        row["id"],
                    )
                    b.progress.set(int(done))
            polls += 1
            await asyncio.sleep(0.5)
        outcome.update(status=row["status"], counts=row["counts"])
        if row["status"] != "completed" or row["counts"].get("sent") != n:
            raise RuntimeError(f"the run ended {row['status']}: {row['counts']}")

    product, product_detail = await b.measure(
        f"recurring product: one run to {n} recipients", n, lambda: _timed_once(one_run), ops=n
    )
    product_rate = rate(n, product.elapsed) if product.ok else None
    return {
        "unit": "messages/s",
        **pair_figures(floor.rate, product_rate, RATIO_TARGETS["recurring"]),
        "n": n,
        "run_seconds": round(product.elapsed, 2),
        "run": outcome,
        "floor_detail": floor_detail,
        "product_detail": product_detail,
    }


# --- idle ---------------------------------------------------------------------------------


async def _db_bytes(b: Bench) -> dict[str, Any]:
    pg = await b.pool.fetchval("SELECT pg_database_size(current_database())")
    temporal = b.stack.temporal_db_bytes()
    return {
        "worker_rss_bytes": b.stack.worker_rss(),
        "temporal_db_bytes": temporal["used"] if temporal else None,
        "temporal_db_file_bytes": temporal["on_disk"] if temporal else None,
        "postgres_bytes": int(pg),
    }


async def measure_idle(b: Bench) -> dict[str, Any]:
    low, high = b.idle_levels
    key = await b.publish(wait_journey(b.key("idle")))
    contacts = await b.new_contacts(high)
    b.progress.note("idle: restarting the product's worker, so it starts empty")
    await b.stack.restart_worker()
    await asyncio.sleep(1)
    baseline = {"participants": 0, **await _db_bytes(b)}
    levels = []
    enrolled = 0
    for level in (low, high):
        batch = contacts[enrolled:level]
        b.progress.phase(f"idle: enrolling up to {level:,} sleeping participants", level)
        b.progress.set(enrolled)
        poller = asyncio.create_task(_poll_count(b, f"JourneyKey = '{key}'", 0, level))
        before = b.stack.cpu_snapshot()
        start = time.perf_counter()
        try:
            await b.enrol_bulk(key, batch)
        finally:
            poller.cancel()
        seconds = time.perf_counter() - start
        enrolled = level
        sample = [f"journey/{key}/{cid}" for cid in (*batch[-3:], *batch[:2])]
        settle = await b.settle(b.stack.task_queue, sample, timeout=120 + len(batch) / 20)
        settle += await b.quiesce()
        cpu = b.stack.cpu_delta(before, b.stack.cpu_snapshot())
        await asyncio.sleep(1)
        b.progress.set(level)
        figures = await _db_bytes(b)
        b.progress.finish(
            f"enrolled {len(batch) / seconds:,.0f}/s, worker RSS "
            f"{(figures['worker_rss_bytes'] or 0) / 1e6:.0f} MB"
        )
        levels.append(
            {
                "participants": level,
                "enrol_seconds": round(seconds, 3),
                "enrol_per_second": rate(len(batch), seconds),
                "settle_seconds": round(settle, 3),
                **figures,
                "cpu_seconds": cpu,
                "cpu_ms_per_participant": {
                    k: round(v * 1000 / len(batch), 3) for k, v in cpu.items()
                },
            }
        )

    def per(field: str, since: dict[str, Any], until: dict[str, Any]) -> float | None:
        a, z = since.get(field), until.get(field)
        count = until["participants"] - since["participants"]
        if a is None or z is None or count <= 0:
            return None
        return float(round((z - a) / count, 1))

    first, last = levels[0], levels[-1]
    rss_ratio = ratio(last["worker_rss_bytes"], first["worker_rss_bytes"])
    return {
        "journey": key,
        "baseline": baseline,
        "levels": levels,
        "per_participant": {
            # RSS between the two levels: the first level also pays for the worker's caches.
            "worker_rss_bytes": per("worker_rss_bytes", first, last),
            "temporal_db_bytes": per("temporal_db_bytes", baseline, last),
            "postgres_bytes": per("postgres_bytes", baseline, last),
        },
        "rss_ratio": rss_ratio,
        "target_rss_ratio": 1 + RSS_GROWTH_TARGET,
        # The target is set for 1k -> 20k; smaller levels (quick mode) only produce figures.
        "met": meets(rss_ratio, 1 + RSS_GROWTH_TARGET, at_most=True) if low >= 1000 else None,
        "worker_max_cached_workflows": 1000,  # the SDK default; worker.py keeps it
    }


# --- histories ----------------------------------------------------------------------------


async def history_of(b: Bench, workflow_id: str, steps: int | None = None) -> dict[str, Any]:
    """Event count of a workflow's history, by type, and per journey step it entered."""
    handle = b.client.get_workflow_handle(workflow_id)
    by_type: Counter[Any] = Counter()
    async for event in handle.fetch_history_events():
        by_type[event.event_type] += 1
    if steps is None:
        from workflows.journey import JourneyWorkflow

        try:
            progress = await handle.query(JourneyWorkflow.progress)
            steps = len(progress.history)
        except Exception:
            steps = None
    from temporalio.api.enums.v1 import EventType

    events = sum(by_type.values())
    return {
        "workflow_id": workflow_id,
        "events": events,
        "steps": steps,
        "events_per_step": round(events / steps, 2) if steps else None,
        "by_type": {
            EventType.Name(k).removeprefix("EVENT_TYPE_").lower(): v
            for k, v in sorted(by_type.items())
        },
    }


async def _until_idle(b: Bench, workflow_id: str, timeout: float = 60) -> None:
    """Until the workflow has no workflow task and no activity pending (or has closed)."""

    async def idle() -> bool:
        raw = (await b.client.get_workflow_handle(workflow_id).describe()).raw_description
        return not raw.HasField("pending_workflow_task") and not raw.pending_activities

    await wait_until(idle, timeout=timeout, interval=0.1, what=f"{workflow_id} to be idle")


async def record_histories(b: Bench) -> dict[str, Any]:
    """One fresh workflow of every shape the bench runs, on a quiet stack, so that its
    history length is the same run after run and a change that adds events shows."""
    from journeys.tracking import click_url

    await b.quiesce()
    tq = b.stack.floor_task_queue
    out: dict[str, Any] = {}

    sleep_id = f"bench-floor/history/{b.stack.run_id}/sleep"
    handle = await b.fc.start_workflow(SLEEP_WORKFLOW, id=sleep_id, task_queue=tq)
    await _until_idle(b, sleep_id)
    await handle.signal(WAKE_SIGNAL, "clicked")
    await handle.result()
    out["floor: sleep, signalled"] = await history_of(b, sleep_id, 1)

    steps_id = f"bench-floor/history/{b.stack.run_id}/steps"
    handle = await b.fc.start_workflow(THREE_STEPS_WORKFLOW, id=steps_id, task_queue=tq)
    await handle.result()
    out["floor: 3 no-op activities"] = await history_of(b, steps_id, 3)

    wait_key = await b.publish(wait_journey(b.key("h-wait")))
    click_key = await b.publish(click_journey(b.key("h-click")))
    steps_key = await b.publish(steps_journey(b.key("h-steps")))
    sleeper, clicker, stepper = await b.new_contacts(3)

    await b.enrol_one(wait_key, sleeper)
    wid = f"journey/{wait_key}/{sleeper}"
    await _until_idle(b, wid)
    out["journey: wait (sleeping)"] = await history_of(b, wid)

    await b.enrol_one(click_key, clicker)
    wid = f"journey/{click_key}/{clicker}"
    await _until_idle(b, wid)
    message_id = await b.pool.fetchval("SELECT id FROM messages WHERE workflow_id = $1", wid)
    status, _ = await b.raw.get(
        _url_path(click_url(b.stack.api_url, b.stack.secret, str(message_id), LANDING))
    )
    if status != 302:
        raise RuntimeError(f"tracking hit answered {status}")
    await b.client.get_workflow_handle(wid).result()
    out["journey: send, wait for click, end (clicked)"] = await history_of(b, wid)

    await b.enrol_one(steps_key, stepper)
    wid = f"journey/{steps_key}/{stepper}"
    await b.client.get_workflow_handle(wid).result()
    out["journey: send, update, end"] = await history_of(b, wid)
    return out
