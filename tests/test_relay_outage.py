"""A bulk page against a relay that says it is unavailable, and its progress.

A real SMTP server (aiosmtpd) answers 421 or 451 at MAIL or RCPT and counts the
connections opened to it and the MAIL commands it was given. A campaign generation
(`work_targets`, the bulk send path) runs against it attempt after attempt, each as
Temporal would run it (the attempt number, the last heartbeat's progress).

Before: every attempt opened a connection per mail of the page (the relay that answered
421 in the fault run got 1,720 in 30 s), and from the second attempt on each mail went
the one-by-one path, logging its own `activity.retry` (about 1,400 lines in 30 s). Now
an attempt tries one transaction, stops the page at the relay's 421/451, and logs one
line; the page is retried whole, with Temporal's backoff, and sends each mail once when
the relay is back.

And the operation's `done` counts the targets done as they are done, not a page at a
time: an operation showed `done: 0` of 1,000 while mails were going out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities import retries, sends
from activities.bulk import BulkActivities
from activities.email import EmailActivities
from activities.smtp import SmtpSender
from journeys.models import OperationInput, OperationPage
from journeys.store import operations
from tests.conftest import Stack
from tests.helpers import create_contact, query_selection


class Relay:
    """The SMTP server: answers as told at MAIL and RCPT, holds DATA when told."""

    def __init__(self) -> None:
        self.connections = 0
        self.mails = 0
        self.received: list[str] = []
        self.at_mail: str | None = None  # the answer to MAIL instead of 250
        self.at_rcpt: dict[str, str] = {}  # per address ("*": every one)
        self.accept = asyncio.Event()  # DATA is answered while set
        self.accept.set()
        self.hold_after: int | None = None  # DATA waits for `accept` after this many
        self.drop_at_data = False  # the connection is cut with no answer to DATA
        self.port = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def counts(self) -> tuple[int, int]:
        return self.connections, self.mails

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails += 1
        if self.at_mail is not None:
            return self.at_mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.at_rcpt.get(address, self.at_rcpt.get("*"))
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.drop_at_data:
            assert server.transport is not None
            server.transport.close()
            return "421 never heard"
        if self.hold_after is not None and len(self.received) >= self.hold_after:
            await self.accept.wait()
        self.received.extend(envelope.rcpt_tos)
        return "250 Message accepted"


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    relay = Relay()

    class Counting(SMTP):
        def connection_made(self, transport: Any) -> None:
            relay.connections += 1
            super().connection_made(transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Counting(relay, hostname="relay"), "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    yield relay
    relay.accept.set()
    server.close()
    await server.wait_closed()


class _Log:
    """Stands in for a module's structlog logger: (level, event, fields) of each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def loud(self) -> list[tuple[str, Any]]:
        return [
            (event, fields.get("attempt"))
            for level, event, fields in self.lines
            if level in ("warning", "error", "exception")
        ]


class Generation:
    """A campaign action's generation, its activities run as Temporal runs them."""

    def __init__(self, stack: Stack, relay: Relay, op: operations.Operation, emails: list[str]):
        self.stack, self.op, self.emails = stack, op, emails
        email = EmailActivities(stack.pool, stack.settings, SmtpSender(relay.url))
        self.bulk = BulkActivities(
            stack.pool,
            stack.temporal,
            stack.settings.task_queue,
            stack.settings.default_time_zone,
            email,
        )
        self.input = OperationInput(operation_id=str(op.id))
        self.attempt = 0
        self.heartbeat: list[Any] = []

    def env(self) -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(
            env.info,
            attempt=self.attempt,
            heartbeat_details=self.heartbeat,
            workflow_id=f"operation/{self.op.id}",
            activity_type="work_targets",
        )
        env.on_heartbeat = self._beat
        return env

    def _beat(self, *details: Any) -> None:
        if details:
            self.heartbeat = list(details)

    async def freeze(self) -> int:
        return int(await ActivityEnvironment().run(self.bulk.freeze_targets, self.input))

    async def work(self) -> OperationPage:
        """The next attempt of `work_targets`."""
        self.attempt += 1
        page: OperationPage = await self.env().run(self.bulk.work_targets, self.input)
        return page

    async def done(self) -> int:
        found = await operations.get_operation(self.stack.pool, self.op.id)
        assert found is not None
        return found.done


async def generation(stack: Stack, relay: Relay, n: int) -> Generation:
    """A campaign action that mails `n` new contacts, and its operation (not started:
    the test runs its activities against `relay`)."""
    http, tag = stack.http, uuid.uuid4().hex[:6]
    selection = f"relay-{tag}"
    await query_selection(http, selection, "relay_tag", tag)
    emails = sorted(f"r{i}-{tag}@example.com" for i in range(n))
    for address in emails:
        await create_contact(http, email=address, fields={"relay_tag": tag})
    campaign = f"relay-{tag}"
    made = await http.post("/campaigns", json={"key": campaign, "name": "Relay outage"})
    assert made.status_code == 201, made.text
    action = await http.post(
        f"/campaigns/{campaign}/actions",
        json={
            "key": "mail",
            "selection": selection,
            "record_type": "outgoing_mail",
            "subject": "Mail",
            "per_destination": False,
            "message": {"subject": "Hello {{ contact.first_name }}", "html": "<p>Hello</p>"},
        },
    )
    assert action.status_code == 201, action.text
    journey = await http.get(f"/journeys/{action.json()['mail_journey']}")
    subject = {
        "campaign": campaign,
        "action": "mail",
        "selection": selection,
        "mail_version": journey.json()["version"],
    }
    op, _ = await operations.create_operation(stack.pool, "generate_action", subject, None)
    found = Generation(stack, relay, op, emails)
    assert await found.freeze() == n
    return found


@pytest.mark.parametrize(
    ("stage", "answer"),
    [
        ("MAIL", "421 4.3.2 Service not available, closing transmission channel"),
        ("RCPT", "421 4.3.2 Service not available, closing transmission channel"),
        ("MAIL", "451 4.3.0 Local error in processing"),
    ],
)
async def test_a_page_stops_at_the_relays_first_421_or_451_and_is_retried_whole(
    stack: Stack, relay: Relay, monkeypatch: pytest.MonkeyPatch, stage: str, answer: str
) -> None:
    log = _Log()
    monkeypatch.setattr(retries, "log", log)
    monkeypatch.setattr(sends, "log", log)
    n = 30
    run = await generation(stack, relay, n)
    if stage == "MAIL":
        relay.at_mail = answer
    else:
        relay.at_rcpt["*"] = answer
    for attempt in (1, 2, 3):
        connections, mails = relay.counts()
        log.lines.clear()
        with pytest.raises(ApplicationError) as failed:
            await run.work()
        # A benign retry of the page (Temporal's backoff), saying what the relay said.
        assert failed.value.category == ApplicationErrorCategory.BENIGN
        assert not failed.value.non_retryable and answer[:3] in str(failed.value)
        # One transaction tried: one connection at most (a 451 leaves it open for the
        # next attempt), one MAIL; and one line.
        assert relay.connections - connections <= 1, (attempt, relay.connections - connections)
        assert relay.mails - mails == 1, (attempt, relay.mails - mails)
        assert log.loud() == [("activity.retry", attempt)], log.lines
    assert relay.received == []

    relay.at_mail, relay.at_rcpt = None, {}
    page = await run.work()
    assert page.done == n and page.counts == {"sent": n}, page
    assert sorted(relay.received) == run.emails  # each once
    statuses = await stack.pool.fetch(
        "SELECT status, count(*) FROM messages WHERE workflow_id = $1 GROUP BY status",
        f"operation/{run.op.id}",
    )
    assert {r["status"]: r["count"] for r in statuses} == {"sent": n}


async def test_a_greylisted_recipient_does_not_stop_the_page(
    stack: Stack, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """451 4.7.1 at RCPT is about that recipient (greylisting), not the relay: the rest
    of the page goes out, and the page's retry sends the one that waited."""
    log = _Log()
    monkeypatch.setattr(retries, "log", log)
    run = await generation(stack, relay, 12)
    grey = run.emails[5]
    relay.at_rcpt[grey] = "451 4.7.1 Greylisted, try again in 5 minutes"
    with pytest.raises(ApplicationError):
        await run.work()
    assert sorted(relay.received) == [e for e in run.emails if e != grey]
    assert log.loud() == [("activity.retry", 1)]
    del relay.at_rcpt[grey]
    page = await run.work()
    assert page.done == 12 and sorted(relay.received) == run.emails


async def test_the_operation_counts_what_is_done_as_it_happens(stack: Stack, relay: Relay) -> None:
    """A page of 40: the relay takes 10 mails and holds the rest; the operation says 10
    done meanwhile (it said 0 until the whole page was done), then 40."""
    n, first = 40, 10
    run = await generation(stack, relay, n)
    relay.hold_after = first
    relay.accept.clear()
    working = asyncio.create_task(run.work())
    try:
        seen = []
        for _ in range(100):
            seen.append(await run.done())
            if seen[-1] == first:
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == first, seen
        assert not working.done()
        view = (await stack.http.get(f"/operations/{run.op.id}")).json()
        assert view["done"] == first and view["counts"] == {"sent": first}, view
    finally:
        relay.accept.set()
        page = await working
    assert page.done == n and await run.done() == n


async def test_a_stopped_page_leaves_done_at_what_was_done(stack: Stack, relay: Relay) -> None:
    """The relay takes 10 mails and then answers 421: the attempt ends with 10 done, and
    a retry does not count them down again."""
    n, first = 40, 10
    run = await generation(stack, relay, n)
    relay.hold_after = first
    relay.accept.clear()
    working = asyncio.create_task(run.work())
    for _ in range(100):
        if len(relay.received) == first:
            break
        await asyncio.sleep(0.05)
    relay.at_mail = "421 4.3.2 Shutting down"
    relay.accept.set()  # the transactions held at DATA are answered 250
    with pytest.raises(ApplicationError):
        await working
    done_then = await run.done()
    assert done_then == len(relay.received) >= first
    relay.at_mail = None
    page = await run.work()
    assert page.done == n and await run.done() == n
    assert sorted(relay.received) == run.emails


async def test_a_connection_lost_during_data_retries_the_page_and_fails_nobody(
    stack: Stack, relay: Relay
) -> None:
    """Before: the lost connection closed the gate but was no outage, so the page went
    one target at a time, each refused at the closed gate and marked failed: every
    target left failed, and nobody sent them."""
    n = 30
    run = await generation(stack, relay, n)
    relay.drop_at_data = True
    with pytest.raises(ApplicationError) as failed:
        await run.work()
    assert not failed.value.non_retryable
    failures = await stack.pool.fetchval(
        "SELECT count(*) FROM messages WHERE workflow_id = $1 AND status = 'failed'",
        f"operation/{run.op.id}",
    )
    assert failures == 0
    relay.drop_at_data = False
    # The cut transaction's outcome is unknown: its lease keeps a retry from sending it
    # until it runs out (here at once, as if the backoff had waited that long).
    await stack.pool.execute(
        "UPDATE messages SET lease_until = now() WHERE workflow_id = $1 AND status = 'sending'",
        f"operation/{run.op.id}",
    )
    page = await run.work()
    assert "failed" not in page.counts and page.done == n, page
    statuses = await stack.pool.fetch(
        "SELECT status, count(*) FROM messages WHERE workflow_id = $1 GROUP BY status",
        f"operation/{run.op.id}",
    )
    assert "failed" not in {r["status"] for r in statuses}, statuses
    assert len(relay.received) == len(set(relay.received)), "none twice"
