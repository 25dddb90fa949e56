"""T4: a message is sent at most once per participant run, step and occurrence,
however often the activity is retried; and every send is logged."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities import sends
from activities.email import EmailActivities
from activities.message import sending_domain
from activities.sends import SendBatch
from activities.smtp import SmtpSender
from journeys.contacts import ContactIn
from journeys.models import SendEmailInput
from journeys.store.contacts import upsert_contact
from tests.conftest import Stack


def send_input(contact_id: str, key: str, **overrides: str) -> SendEmailInput:
    fields = {
        "idempotency_key": key,
        "workflow_id": f"journey/once/{contact_id}",
        "journey_key": "once",
        "version": 1,
        "contact_id": contact_id,
        "step": "mail1",
        "subject": "Once, {{ contact.first_name }}",
        "html": "<p>only once</p>",
        **overrides,
    }
    return SendEmailInput.model_validate(fields)


async def test_retries_and_concurrent_attempts_send_one_message(stack: Stack) -> None:
    email = f"once-{uuid.uuid4().hex[:6]}@example.com"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email, first_name="Cy"))
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    env = ActivityEnvironment()
    key = f"journey/once/{contact.id}/run-1/mail1/1"

    first = await env.run(activities.send_email, send_input(str(contact.id), key))
    retries = await asyncio.gather(
        *(env.run(activities.send_email, send_input(str(contact.id), key)) for _ in range(5))
    )
    assert first.status == "sent"
    assert {r.message_id for r in retries} == {first.message_id}
    await asyncio.sleep(0.5)
    assert [m["subject"] for m in stack.mail_to(email)] == ["Once, Cy"]

    row = await stack.pool.fetchrow("SELECT * FROM messages WHERE idempotency_key = $1", key)
    assert row is not None
    assert row["status"] == "sent" and row["recipient"] == email and row["step"] == "mail1"
    # The Message-ID, in the sending domain of JOURNEYS_MAIL_FROM.
    domain = sending_domain(stack.settings.mail_from)
    assert row["sent_at"] is not None and row["provider_id"] == f"<{first.message_id}@{domain}>"

    # A later occurrence of the same step is a new message.
    again = await env.run(activities.send_email, send_input(str(contact.id), key[:-1] + "2"))
    assert again.message_id != first.message_id
    assert len(await stack.wait_for_mail(email, 2)) == 2


async def test_no_address_is_skipped_and_bad_template_is_not_retried(stack: Stack) -> None:
    contact, *_ = await upsert_contact(stack.pool, ContactIn(first_name="No Mail"))
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    env = ActivityEnvironment()
    skipped = await env.run(
        activities.send_email, send_input(str(contact.id), f"skip-{contact.id}")
    )
    assert skipped.status == "skipped" and skipped.reason == "no e-mail address"

    contact, *_ = await upsert_contact(stack.pool, ContactIn(email="tpl@example.com"))
    bad = send_input(str(contact.id), f"bad-{contact.id}", html="{{ 1 / 0 }}")
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.send_email, bad)
    assert info.value.non_retryable and "mail1" in str(info.value)
    assert "ZeroDivisionError" in str(info.value)


async def test_a_retry_after_unsubscribing_does_not_send(stack: Stack) -> None:
    email = f"late-{uuid.uuid4().hex[:6]}@example.com"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email))
    key = f"journey/late/{contact.id}/run-1/mail1/1"
    # A first attempt claimed the key and died before talking to SMTP.
    await stack.pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, recipient, status)
           VALUES ($1, $2, 'journey/late/x', 'late', 1, 'mail1', $3, $4, 'sending')""",
        uuid.uuid4(),
        key,
        contact.id,
        email,
    )
    await stack.pool.execute(
        "UPDATE contacts SET unsubscribed_at = now() WHERE id = $1", contact.id
    )
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    result = await ActivityEnvironment().run(
        activities.send_email, send_input(str(contact.id), key)
    )
    assert result.status == "skipped" and result.reason == "unsubscribed"
    status = await stack.pool.fetchval(
        "SELECT status FROM messages WHERE idempotency_key = $1", key
    )
    assert status == "skipped"
    await asyncio.sleep(0.5)
    assert stack.mail_to(email) == []


class _BlipOnMarkSent:
    """The pool, except that marking a message sent fails `times` times as if
    PostgreSQL restarted between the SMTP server's 250 and that write (on the pool or
    on a connection taken from it)."""

    def __init__(self, pool: Any, times: int) -> None:
        self._pool, self.times = pool, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            yield _BlipOnConnection(conn, self)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        self.blip(query)
        return str(await self._pool.execute(query, *args, **kwargs))

    def blip(self, query: str) -> None:
        if "status = 'sent'" in query and self.times > 0:
            self.times -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")


class _BlipOnConnection:
    def __init__(self, conn: Any, blips: _BlipOnMarkSent) -> None:
        self._conn, self._blips = conn, blips

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        self._blips.blip(query)
        return str(await self._conn.execute(query, *args, **kwargs))


async def test_a_database_blip_after_smtp_accepted_does_not_send_twice(stack: Stack) -> None:
    email = f"blip-{uuid.uuid4().hex[:6]}@example.com"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email))
    key = f"journey/blip/{contact.id}/run-1/mail1/1"
    activities = EmailActivities(
        _BlipOnMarkSent(stack.pool, times=3),  # type: ignore[arg-type]
        stack.settings,
        SmtpSender(stack.settings.smtp_url),
    )
    env = ActivityEnvironment()
    first = await env.run(activities.send_email, send_input(str(contact.id), key))
    # Had the attempt failed, Temporal would retry it: that retry must not send either.
    retry = await env.run(activities.send_email, send_input(str(contact.id), key))
    assert first.status == retry.status == "sent"
    await asyncio.sleep(0.5)
    assert len(stack.mail_to(email)) == 1
    assert (
        await stack.pool.fetchval("SELECT status FROM messages WHERE idempotency_key = $1", key)
        == "sent"
    )


async def test_a_retry_waits_for_an_earlier_attempt_that_may_still_be_sending(
    stack: Stack,
) -> None:
    email = f"lease-{uuid.uuid4().hex[:6]}@example.com"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email))
    key = f"journey/lease/{contact.id}/run-1/mail1/1"
    # An earlier attempt claimed the key and is (as far as anyone knows) in DATA.
    await stack.pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, recipient, status, lease_until)
           VALUES ($1, $2, 'journey/lease/x', 'lease', 1, 'mail1', $3, $4, 'sending',
                   now() + interval '10 seconds')""",
        uuid.uuid4(),
        key,
        contact.id,
        email,
    )
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.send_email, send_input(str(contact.id), key))
    assert not info.value.non_retryable and info.value.category == ApplicationErrorCategory.BENIGN
    assert "may still be talking to the provider" in str(info.value)
    assert info.value.next_retry_delay is not None
    assert info.value.next_retry_delay <= timedelta(seconds=10)
    await asyncio.sleep(0.5)
    assert stack.mail_to(email) == []

    # Once that attempt's lease has run out (it is gone), the retry sends.
    await stack.pool.execute(
        "UPDATE messages SET lease_until = now() - interval '1 second' WHERE idempotency_key = $1",
        key,
    )
    result = await env.run(activities.send_email, send_input(str(contact.id), key))
    assert result.status == "sent"
    assert len(await stack.wait_for_mail(email, 1)) == 1


async def test_an_smtp_outage_is_a_quiet_retry_that_names_the_reason(stack: Stack) -> None:
    email = f"down-{uuid.uuid4().hex[:6]}@example.com"
    contact, *_ = await upsert_contact(stack.pool, ContactIn(email=email))
    key = f"journey/down/{contact.id}/run-1/mail1/1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = EmailActivities(stack.pool, stack.settings, SmtpSender(f"smtp://127.0.0.1:{closed}"))
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError) as info:
        await env.run(down.send_email, send_input(str(contact.id), key))
    # Benign: the SDK logs it at debug level, without the traceback per attempt.
    assert info.value.category == ApplicationErrorCategory.BENIGN
    assert not info.value.non_retryable
    assert info.value.message.startswith("the mail server is unavailable: SMTPConnectError")
    # The failed attempt let go of its lease: the next one sends at once.
    up = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    assert (await env.run(up.send_email, send_input(str(contact.id), key))).status == "sent"
    assert len(await stack.wait_for_mail(email, 1)) == 1


async def test_recording_a_send_is_not_interrupted_by_a_cancellation() -> None:
    from activities.retries import persist

    written = asyncio.Event()

    async def slow_write() -> None:
        await asyncio.sleep(0.3)
        written.set()

    task = asyncio.create_task(persist(slow_write, what="mark sent"))
    await asyncio.sleep(0.05)
    task.cancel()  # the worker shutting down, or the attempt timed out
    with pytest.raises(asyncio.CancelledError):
        await task
    assert written.is_set(), "the cancellation took effect before the write was done"


async def test_a_stale_attempt_cannot_touch_the_lease_of_the_attempt_that_took_over(
    stack: Stack,
) -> None:
    from activities.sends import Send
    from journeys.models import SendInput

    contact, *_ = await upsert_contact(stack.pool, ContactIn(email="stale@example.com"))
    stale, current = uuid.uuid4(), uuid.uuid4()
    message_id = uuid.uuid4()
    await stack.pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, recipient, status, lease_owner, lease_until)
           VALUES ($1, $2, 'journey/stale/x', 'stale', 1, 'mail1', $3, 'stale@example.com',
                   'sending', $4, now() - interval '1 second')""",
        message_id,
        f"stale-{message_id}",
        contact.id,
        stale,
    )
    input = SendInput(
        idempotency_key=f"stale-{message_id}",
        workflow_id="journey/stale/x",
        journey_key="stale",
        version=1,
        contact_id=str(contact.id),
        step="mail1",
    )
    taker = Send(stack.pool, input, message_id)
    taker.owner = current
    await taker._take_over(stale, timedelta(seconds=-1))
    assert taker.held()
    old = Send(stack.pool, input, message_id)
    old.owner = stale
    await old._renew()
    await old._release()
    assert not old.held()
    row = await stack.pool.fetchrow(
        "SELECT lease_owner, lease_until > now() AS live FROM messages WHERE id = $1", message_id
    )
    assert row is not None and row["lease_owner"] == current and row["live"]


class _Log:
    """Stands in for a module's structlog logger: (level, event, fields) of each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))


async def test_a_batch_sends_each_mail_once_and_reports_each_outcome(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bulk send path (`send_emails`): one claim for the page, group-committed
    `sent` rows, and per mail its own outcome; a page sent again sends nothing. The
    page logs one line with its counts."""
    log = _Log()
    monkeypatch.setattr(sends, "log", log)
    tag = uuid.uuid4().hex[:6]
    people = [
        (
            await upsert_contact(
                stack.pool, ContactIn(email=f"b{i}-{tag}@example.com", first_name=n)
            )
        )[0]
        for i, n in enumerate(["Ann", "Bob", "Cas"])
    ]
    no_mail, *_ = await upsert_contact(stack.pool, ContactIn(first_name="Dee"))
    held, *_ = await upsert_contact(stack.pool, ContactIn(email=f"held-{tag}@example.com"))
    # An earlier attempt claimed this one and is still talking to the relay.
    await stack.pool.execute(
        """INSERT INTO messages (id, idempotency_key, workflow_id, journey_key, journey_version,
                                 step, contact_id, recipient, status, lease_owner, lease_until)
           VALUES ($1, $2, 'journey/once/x', 'once', 1, 'mail1', $3, $4, 'sending', $5,
                   now() + interval '10 seconds')""",
        uuid.uuid4(),
        f"batch-{tag}-held",
        held.id,
        held.email,
        uuid.uuid4(),
    )
    missing = uuid.uuid4()
    inputs = [
        send_input(str(c.id), f"batch-{tag}-{i}", follow_up_path=["mail1"])  # type: ignore[arg-type]
        if i == 0
        else send_input(str(c.id), f"batch-{tag}-{i}")
        for i, c in enumerate(people)
    ]
    inputs[2] = send_input(str(people[2].id), f"batch-{tag}-2", html="{{ 1 / 0 }}")
    inputs += [
        send_input(str(no_mail.id), f"batch-{tag}-nomail"),
        send_input(str(missing), f"batch-{tag}-missing"),
        send_input(str(held.id), f"batch-{tag}-held"),
    ]
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    env = ActivityEnvironment()
    results = await env.run(activities.send_emails, inputs)
    info = [(event, fields) for level, event, fields in log.lines if level == "info"]
    assert info == [
        (
            "send.batch",
            {
                "channel": "email",
                "journey": "once",
                "step": "mail1",
                "workflow_id": inputs[0].workflow_id,
                "sent": 2,
                "failed": 1,
                "skipped": 1,
            },
        )
    ]
    assert sorted(f["message_id"] for lvl, e, f in log.lines if e == "send.sent") == sorted(
        r.message_id for r in results[:2] if not isinstance(r, BaseException)
    )

    sent_ann, sent_bob, bad, skipped, gone, waiting = results
    assert not isinstance(sent_ann, BaseException) and sent_ann.status == "sent"
    assert not isinstance(sent_bob, BaseException) and sent_bob.status == "sent"
    assert isinstance(bad, ApplicationError) and bad.non_retryable
    assert "ZeroDivisionError" in str(bad)
    assert not isinstance(skipped, BaseException)
    assert (skipped.status, skipped.reason) == ("skipped", "no e-mail address")
    assert isinstance(gone, ApplicationError) and gone.non_retryable and str(missing) in str(gone)
    # The held one goes the one-by-one way, which waits for the earlier attempt's lease.
    assert isinstance(waiting, ApplicationError) and not waiting.non_retryable
    assert "earlier attempt" in str(waiting)

    assert [m["subject"] for m in await stack.wait_for_mail(people[0].email or "", 1)] == [
        "Once, Ann"
    ]
    assert [m["subject"] for m in await stack.wait_for_mail(people[1].email or "", 1)] == [
        "Once, Bob"
    ]
    rows = {
        r["idempotency_key"]: r
        for r in await stack.pool.fetch(
            "SELECT * FROM messages WHERE idempotency_key LIKE $1", f"batch-{tag}-%"
        )
    }
    ann = rows[f"batch-{tag}-0"]
    assert ann["status"] == "sent" and ann["sent_at"] is not None and ann["lease_owner"] is None
    domain = sending_domain(stack.settings.mail_from)
    assert ann["provider_id"] == f"<{sent_ann.message_id}@{domain}>"
    assert ann["follow_up_path"] == ["mail1"]
    assert rows[f"batch-{tag}-1"]["follow_up_path"] is None
    assert rows[f"batch-{tag}-2"]["status"] == "failed"
    assert rows[f"batch-{tag}-nomail"]["status"] == "skipped"
    assert f"batch-{tag}-missing" not in rows
    # A message with follow-ups gets its `sent` event for the dispatcher, once.
    kinds = await stack.pool.fetch(
        "SELECT kind FROM message_events WHERE message_id = $1", ann["id"]
    )
    assert [k["kind"] for k in kinds] == ["sent"]

    # The page again (a retried activity): the same outcomes, no second mail.
    log.lines.clear()
    again = await env.run(activities.send_emails, inputs[:2])
    assert [fields["sent_before"] for _, event, fields in log.lines if event == "send.batch"] == [2]
    assert [r.message_id for r in again if not isinstance(r, BaseException)] == [
        sent_ann.message_id,
        sent_bob.message_id,
    ]
    await asyncio.sleep(0.5)
    assert len(stack.mail_to(people[0].email or "")) == 1
    assert len(stack.mail_to(people[1].email or "")) == 1
    assert stack.mail_to(people[2].email or "") == []


async def test_a_key_twice_in_one_batch_is_sent_once(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:6]
    contact, *_ = await upsert_contact(
        stack.pool, ContactIn(email=f"twice-{tag}@example.com", first_name="Tia")
    )
    activities = EmailActivities(stack.pool, stack.settings, SmtpSender(stack.settings.smtp_url))
    same = send_input(str(contact.id), f"twice-{tag}")
    first, second = await ActivityEnvironment().run(activities.send_emails, [same, same])
    assert not isinstance(first, BaseException) and first.status == "sent"
    assert second == first
    await asyncio.sleep(0.5)
    assert len(stack.mail_to(f"twice-{tag}@example.com")) == 1


async def test_a_batch_gives_up_the_rows_whose_lease_another_attempt_took(stack: Stack) -> None:
    """Its renewal finds out: those rows are not sent by this batch any more."""
    tag = uuid.uuid4().hex[:6]
    people = [
        (await upsert_contact(stack.pool, ContactIn(email=f"l{i}-{tag}@example.com")))[0]
        for i in range(2)
    ]
    inputs = [send_input(str(c.id), f"lease-{tag}-{i}") for i, c in enumerate(people)]
    async with SendBatch(stack.pool) as batch:
        kept, taken = await batch.claim(
            "email", [(i, c.id, c.email, None) for i, c in zip(inputs, people, strict=True)]
        )
        assert isinstance(kept, uuid.UUID) and isinstance(taken, uuid.UUID)
        assert batch.holds(kept)() and batch.holds(taken)()
        await stack.pool.execute(
            "UPDATE messages SET lease_owner = $2 WHERE id = $1", taken, uuid.uuid4()
        )
        await batch._renew()
        assert batch.holds(kept)() and not batch.holds(taken)()
        await stack.pool.execute("UPDATE messages SET status = 'skipped' WHERE id = $1", kept)
