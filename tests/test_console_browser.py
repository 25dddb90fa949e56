"""The console in a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright, against the real stack. Sign in, publish from the form, enrol through the
API and watch the counts on the graph change by themselves, open a participant; and
the same pages with JavaScript off.

The screenshots the README shows are written here: docs/console/*.png.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bench.faults import daytime_zone
from tests.builders import journey
from tests.conftest import API_KEY, Stack
from tests.helpers import create_contact, enrol, wait_for_step
from tests.test_recurring import exclusion, recurring_send, selection

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "console"
# The flags a root user on a machine without a network needs: no sandbox (root), and
# none of Chromium's own calls home, which this machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    return os.environ.get("JOURNEYS_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        message = "no Chromium: `apt-get install chromium` (infra/test.sh does, as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


def tour_journey(key: str) -> dict[str, Any]:
    """The README's tour: a welcome mail with a follow-up, a wait for the click, an
    A/B split of the reminder."""
    return journey(
        key,
        name="Welcome series",
        steps={
            "welcome": {
                "type": "send_email",
                "title": "Welcome mail",
                "subject": "Welcome, {{ contact.first_name }}",
                "html": '<p>Get <a href="https://example.com/start">started</a></p>',
                "next": "wait_click",
                "follow_ups": [
                    {
                        "key": "opened",
                        "on": "opened",
                        "wait": "P1D",
                        "start": "tag",
                        "steps": {
                            "tag": {
                                "type": "update_contact",
                                "title": "Mark as engaged",
                                "set": {"engaged": True},
                                "next": "done",
                            },
                            "done": {"type": "end"},
                        },
                    }
                ],
            },
            "wait_click": {
                "type": "wait_for_event",
                "title": "Clicked within 3 days?",
                "event": "clicked",
                "message": "welcome",
                "timeout": "P3D",
                "on_event": "thanks",
                "on_timeout": "ab",
            },
            "ab": {
                "type": "split",
                "title": "Reminder test",
                "branches": [{"percent": 70, "next": "reminder"}, {"percent": 30, "next": "end"}],
            },
            "reminder": {
                "type": "send_email",
                "title": "Reminder",
                "subject": "Still there?",
                "html": "<p>x</p>",
                "next": "end",
            },
            "thanks": {
                "type": "send_email",
                "title": "Thank-you mail",
                "subject": "Thanks",
                "html": "<p>x</p>",
                "next": "end",
            },
            "end": {"type": "end"},
        },
    )


async def sign_in(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/console")
    await expect(page).to_have_url(f"{base_url}/console/sign-in?next=%2Fconsole")
    await page.get_by_label("API key").fill(API_KEY)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base_url}/console/journeys")


async def publish_in_form(page: Page, base_url: str, definition: dict[str, Any]) -> None:
    await page.goto(f"{base_url}/console/publish")
    await page.locator("textarea[name=definition]").fill(json.dumps(definition, indent=2))
    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("status")).to_contain_text("Published version 1")


def here(page: Page, step: str) -> Any:
    return page.locator(f'[data-step="{step}"] [data-here]')


async def test_publish_watch_the_counts_and_open_a_participant(
    stack: Stack, chromium: Browser
) -> None:
    context = await chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    try:
        await sign_in(page, stack.base_url)
        key = f"tour-{uuid.uuid4().hex[:6]}"
        await publish_in_form(page, stack.base_url, tour_journey(key))
        await expect(page.locator("h1")).to_contain_text("Welcome series")
        await expect(here(page, "wait_click")).to_have_text("0")

        contacts = [
            await create_contact(stack.http, first_name=name) for name in ("Ann", "Bob", "Cy")
        ]
        await enrol(stack.http, key, *contacts)
        for contact in contacts:
            await wait_for_step(stack.http, key, contact, "wait_click")
        # No reload: the page's script brings the new numbers.
        await expect(here(page, "wait_click")).to_have_text("3", timeout=20_000)
        await expect(page.locator('[data-step="welcome"] [data-passed]')).to_have_text("3")
        await expect(page.locator('[data-summary="running"]')).to_have_text("3")
        # Reloaded, the page lists them too (and shows the numbers it keeps fresh).
        await page.reload()
        await expect(page.locator("#participants")).to_contain_text(contacts[2])
        await expect(here(page, "wait_click")).to_have_text("3")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=SCREENSHOTS / "journey-graph.png", full_page=True)

        # The step's box links to who is there; a participant's page from there.
        await page.locator('[data-step="wait_click"]').first.click()
        await expect(page.locator("h2").first).to_contain_text("at step wait_click")
        await page.get_by_role("link", name=contacts[0]).click()
        await expect(page.locator("#status")).to_have_text("running")
        await expect(page.locator("#current-step")).to_have_text("wait_click")
        await expect(page.locator("#messages")).to_contain_text("Welcome, Ann")
        await expect(
            page.get_by_role("link", name="the run in the Temporal web UI")
        ).to_have_attribute(
            "href",
            f"{stack.settings.temporal_ui_url}/namespaces/default/workflows/journey%2F{key}%2F{contacts[0]}/"
            + (await stack.http.get(f"/journeys/{key}/participants/{contacts[0]}")).json()["run_id"]
            + "/history",
        )
        await page.screenshot(path=SCREENSHOTS / "participant.png", full_page=True)
    finally:
        await context.close()


async def test_every_page_works_without_javascript(stack: Stack, chromium: Browser) -> None:
    context = await chromium.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, stack.base_url)
        key = f"nojs-{uuid.uuid4().hex[:6]}"
        broken = tour_journey(key)
        broken["steps"]["reminder"]["next"] = "nowhere"
        await page.goto(f"{stack.base_url}/console/publish")
        await page.locator("textarea[name=definition]").fill(json.dumps(broken))
        await page.get_by_role("button", name="Check").click()
        await expect(page.locator("#problems")).to_contain_text(
            "step 'reminder': next 'nowhere' is not a step of this journey"
        )
        reminder = await page.locator('[data-step="reminder"]').get_attribute("class")
        assert "problem" in (reminder or "").split()

        await publish_in_form(page, stack.base_url, tour_journey(key))
        contact = await create_contact(stack.http, first_name="Dee")
        await enrol(stack.http, key, contact)
        await wait_for_step(stack.http, key, contact, "wait_click")
        for _ in range(50):  # visibility catches up within moments; a reload shows it
            await page.reload()
            if await here(page, "wait_click").text_content() == "1":
                break
        await expect(here(page, "wait_click")).to_have_text("1")
        await page.goto(f"{stack.base_url}/console/journeys")
        await expect(page.locator(f'tr[data-journey="{key}"] [data-count="running"]')).to_have_text(
            "1"
        )
        await page.goto(f"{stack.base_url}/console/journeys/{key}/participants/{contact}")
        await expect(page.locator("#current-step")).to_have_text("wait_click")
    finally:
        await context.close()


async def test_stop_and_resume_a_recurring_send(stack: Stack, chromium: Browser) -> None:
    """With JavaScript off: the buttons are forms."""
    tag = uuid.uuid4().hex[:6]
    key = f"browser-rec-{tag}"
    address = f"rec-{tag}@example.com"
    query = {"all": [{"field": "email", "op": "eq", "value": address}, exclusion(key)]}
    await selection(stack.http, key, query)
    body = recurring_send(
        key,
        key,
        name="Service mail",
        message={"subject": "Your visit", "html": "<p>See you</p>"},
        status="live",
        times=["10:00"],
        time_zone=daytime_zone(),
    )
    assert (await stack.http.post("/recurring-sends", json=body)).status_code == 201
    schedule = stack.temporal.get_schedule_handle(f"recurring/{key}")
    context = await chromium.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await sign_in(page, stack.base_url)
        await page.get_by_role("link", name="Recurring sends").click()
        await page.get_by_role("link", name="Service mail").click()
        await expect(page.locator("#status")).to_have_text("live")
        await page.get_by_role("button", name="Stop").click()
        await expect(page.locator("#status")).to_have_text("stopped")
        assert (await schedule.describe()).schedule.state.paused
        assert (await stack.http.get(f"/recurring-sends/{key}")).json()["times"] == ["10:00"]
        await page.get_by_role("button", name="Live").click()
        await expect(page.locator("#status")).to_have_text("live")
        assert not (await schedule.describe()).schedule.state.paused
        await expect(page.locator("#next-runs")).to_contain_text("10:00")
    finally:
        await context.close()


async def test_a_run_terminated_from_outside_shows_on_the_open_journey_page(
    stack: Stack, chromium: Browser, tmp_path: Path
) -> None:
    """The summary gains a "terminated from outside" line, without a reload, once an
    operator terminates a run in the Temporal UI; the participant's page says why."""
    context = await chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    try:
        await sign_in(page, stack.base_url)
        key = f"cut-{uuid.uuid4().hex[:6]}"
        await publish_in_form(page, stack.base_url, tour_journey(key))
        contact = await create_contact(stack.http, first_name="Dora")
        await enrol(stack.http, key, contact)
        await wait_for_step(stack.http, key, contact, "wait_click")
        terminated = page.get_by_role("link", name="terminated from outside")
        await expect(terminated).to_be_hidden()
        handle = stack.temporal.get_workflow_handle(f"journey/{key}/{contact}")
        await handle.terminate(reason="sent to the wrong list")
        await expect(terminated).to_be_visible(timeout=15_000)
        await expect(terminated).to_have_text("1 terminated from outside")
        await page.screenshot(path=str(tmp_path / "terminated.png"), full_page=True)
        await terminated.click()
        await expect(page.get_by_role("row", name=contact)).to_contain_text("Dora")
        await page.get_by_role("link", name=contact).click()
        await expect(page.locator("#status")).to_have_text("terminated")
        await expect(page.locator(".reason")).to_have_text("sent to the wrong list")
        await expect(page.locator(".state")).not_to_contain_text("Waiting")
        await page.screenshot(path=os.environ.get("JOURNEYS_SHOT", str(tmp_path / "p.png")))
    finally:
        await context.close()
