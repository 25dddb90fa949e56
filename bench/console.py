"""The console's pages with a crowded journey: `console_n` participants (10,000; quick
1,000) asleep in it, each page asked for `REPEATS` times in a row, signed in as a
browser is. Target: every page's p90 under 200 ms (issue 12); the first request of
each page, which may count afresh, is reported besides."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httpx

from bench.load import wait_until
from bench.report import latency_summary
from journeys.models import SA_JOURNEY

if TYPE_CHECKING:
    from bench.pairs import Bench

PAGE_TARGET_MS = 200.0
REPEATS = 20
FAR = "P30D"


def crowded_journey(key: str) -> dict[str, Any]:
    """A long wait, then a branch to a mail or an update: everyone sleeps in the first
    step (one workflow task each, so the stack is quiet again soon after enrolling),
    and the graph has six steps to count."""
    return {
        "key": key,
        "name": "bench: console",
        "entry": {"type": "api"},
        "start": "nap",
        "steps": {
            "nap": {"type": "wait", "duration": FAR, "next": "sort"},
            "sort": {
                "type": "branch",
                "title": "Dutch?",
                "if": {"field": "bench_country", "op": "eq", "value": "NL"},
                "then": "mail",
                "else": "mark",
            },
            "mail": {"type": "send_email", "subject": "Hoi", "html": "<p>x</p>", "next": "done"},
            "mark": {"type": "update_contact", "set": {"bench_seen": True}, "next": "done"},
            "done": {"type": "end"},
        },
    }


async def _timed_page(browser: httpx.AsyncClient, path: str) -> tuple[list[float], int]:
    timings: list[float] = []
    status = 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        response = await browser.get(path)
        timings.append(time.perf_counter() - start)
        status = response.status_code
        if status != 200:
            break
    return timings, status


async def measure_console(b: Bench) -> dict[str, Any]:
    n = b.console_n
    key = b.key("console")
    await b.publish(crowded_journey(key))
    contacts = await b.new_contacts(n, lambda i: {"bench_country": ("NL", "BE")[i % 2]})
    b.progress.phase(f"console: enrolling {n:,} participants", n)
    await b.enrol_bulk(key, contacts)
    b.progress.finish()

    async def all_asleep() -> bool:
        found = await b.count(f"{SA_JOURNEY} = '{key}' AND ExecutionStatus = 'Running'")
        b.progress.set(found)
        return found >= n

    b.progress.phase("console: waiting for visibility", n)
    await wait_until(all_asleep, timeout=600, interval=1, what="participants in visibility")
    b.progress.finish()
    await b.quiesce(timeout=600)
    someone = contacts[0]
    pages = {
        "journeys list": "/console/journeys",
        "journey graph": f"/console/journeys/{key}",
        "graph counts (live refresh)": f"/console/journeys/{key}/counts.json",
        "participants at a step": f"/console/journeys/{key}?step=nap",
        "participant": f"/console/journeys/{key}/participants/{someone}",
        "contact search": f"/console/contacts?q=bench-{str(someone)[:8]}",
        "contact": f"/console/contacts/{someone}",
        "messages": "/console/messages",
        "campaigns": "/console/campaigns",
        "recurring sends": "/console/recurring-sends",
    }
    figures: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=b.stack.api_url, timeout=60) as browser:
        form = await browser.get("/console/sign-in")
        token = re.search(r'name="token" value="([0-9a-f]+)"', form.text)
        signed = await browser.post(
            "/console/sign-in",
            data={"key": b.stack.api_key, "token": token.group(1) if token else ""},
        )
        if signed.status_code != 303:
            raise RuntimeError(f"console sign-in answered {signed.status_code}")
        # A journey nobody looked at: the page answers without waiting for its counts
        # ("…"), and the live refresh's first ask waits for them.
        start = time.perf_counter()
        first = await browser.get(pages["journey graph"])
        page_ms = (time.perf_counter() - start) * 1000
        numbers = await browser.get(pages["graph counts (live refresh)"])
        numbers_ms = (time.perf_counter() - start) * 1000
        if first.status_code != 200 or numbers.status_code != 200:
            raise RuntimeError(f"the graph page answered {first.status_code}/{numbers.status_code}")
        cold = {
            "page_ms": round(page_ms, 1),
            "numbers_ms": round(numbers_ms, 1),
            "page_waited_for_numbers": "data-pending" not in first.text,
        }
        b.progress.note(
            f"console: first view of the graph {page_ms:.0f} ms, its numbers after "
            f"{numbers_ms:.0f} ms"
        )
        b.progress.phase("console: pages", len(pages) * REPEATS)
        for label, path in pages.items():
            timings, status = await _timed_page(browser, path)
            b.progress.advance(len(timings))
            if status == 404:
                continue  # a section this build does not serve
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            # The first asks visibility itself; later ones within seconds get the numbers
            # the console keeps fresh (api/console/freshness.py).
            figures[label] = {
                **latency_summary(timings),
                "first_ms": round(timings[0] * 1000, 1),
            }
        b.progress.finish()
    worst = max((f["p90_ms"] or 0.0 for f in figures.values()), default=None)
    return {
        "participants": n,
        "first_view": cold,
        "pages": figures,
        "worst_p90_ms": worst,
        "target_ms": PAGE_TARGET_MS,
        "met": None if worst is None else worst < PAGE_TARGET_MS,
    }
