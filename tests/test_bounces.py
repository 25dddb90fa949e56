"""Bounce notices on the real stack: a DSN sent over LMTP (and SMTP) to the listener of
`journeys bounces serve` becomes the message's delivery error through the outbox (the
journey waiting for it wakes, the address is suppressed); a complaint found by the IMAP
poller does the same; forged and unparseable notices record nothing and are listed by
GET /bounces/kept. The Postfix end to end is tests/test_bounces_postfix.py."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import smtplib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from journeys.bounces import BounceListener, ImapMailbox, ImapPoller, Intake
from journeys.db import create_pool
from journeys.devstack import free_port
from journeys.outages import outage_of
from journeys.tokens import bounce_address
from tests.bounce_samples import arf_complaint, auto_reply, base64_dsn, postfix_dsn
from tests.builders import journey, mail
from tests.conftest import API_KEY, SECRET, Stack
from tests.helpers import (
    create_contact,
    enrol,
    participant,
    publish,
    read_mail,
    run_cli,
    wait_for_step,
    wait_until_done,
)

DOMAIN = "bounces.journeys.test"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
async def listener(stack: Stack) -> AsyncIterator[BounceListener]:
    async with BounceListener(Intake(stack.pool, SECRET, DOMAIN), port=0) as served:
        yield served


def watcher(key: str) -> dict[str, Any]:
    """mail1 -> wait for a hard bounce or a complaint on it -> flag the contact."""
    return journey(
        key,
        name="Bounce watcher",
        start="mail1",
        steps={
            "mail1": {**mail("Hello"), "next": "wait_error"},
            "wait_error": {
                "type": "wait_for_event",
                "event": "delivery_error",
                "kinds": ["hard_bounce", "complaint"],
                "message": "mail1",
                "timeout": "PT30M",
                "on_event": "flag",
                "on_timeout": "end",
            },
            "flag": {"type": "update_contact", "set": {"needs_cleanup": True}, "next": "end"},
            "end": {"type": "end"},
        },
    )


@dataclass
class Sent:
    key: str
    contact: str
    email: str
    message_id: uuid.UUID


async def mailed_and_waiting(stack: Stack) -> Sent:
    """A contact whose journey mailed it and now waits for a bounce."""
    key = unique("vbounce")
    await publish(stack.http, watcher(key))
    email = f"{unique('dsn')}@example.com"
    contact = await create_contact(stack.http, email=email)
    await enrol(stack.http, key, contact)
    await read_mail(stack.http, email, "Hello")
    view = await wait_for_step(stack.http, key, contact, "wait_error")
    return Sent(key, contact, email, uuid.UUID(view["messages"][0]["id"]))


def deliver(port: int, recipients: list[str], raw: bytes, lmtp: bool = True) -> dict[str, Any]:
    """One transaction to the listener (a relay's part): refusals by recipient, or the
    reply to DATA as `{"data": (code, text)}`."""
    client: smtplib.SMTP = (
        smtplib.LMTP("127.0.0.1", port) if lmtp else smtplib.SMTP("127.0.0.1", port)
    )
    with client:
        client.ehlo_or_helo_if_needed()
        client.mail("<>")  # a DSN's envelope sender is null
        refused = {}
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            if code != 250:
                refused[rcpt] = (code, text.decode())
        if len(refused) == len(recipients):
            client.rset()
            return refused
        code, text = client.data(raw)
        return {**refused, "data": (code, text.decode())}


async def errors_of(stack: Stack, message_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await stack.pool.fetch(
        "SELECT data FROM message_events WHERE message_id = $1 AND kind = 'delivery_error'",
        message_id,
    )
    return [dict(r["data"]) for r in rows]


async def test_a_dsn_over_lmtp_is_a_hard_bounce_of_its_message(
    stack: Stack, listener: BounceListener
) -> None:
    sent = await mailed_and_waiting(stack)
    to = bounce_address(sent.message_id, SECRET, DOMAIN)
    raw = postfix_dsn(to, sent.message_id, sent.email)
    answer = await asyncio.to_thread(deliver, listener.port, [to], raw)
    assert answer == {"data": (250, "2.0.0 taken (recorded)")}
    # The journey waiting for a bounce wakes, and the address is suppressed.
    view = await wait_until_done(stack.http, sent.key, sent.contact)
    assert [(h["step"], h["outcome"]) for h in view["history"]][:2] == [
        ("mail1", "sent"),
        ("wait_error", "delivery_error"),
    ]
    contact = (await stack.http.get(f"/contacts/{sent.contact}")).json()
    assert contact["bounced"] is True and contact["fields"]["needs_cleanup"] is True
    [error] = await errors_of(stack, sent.message_id)
    assert error == {
        "kind": "hard_bounce",
        "detail": 'failed, 5.1.1 (X-Postfix; unknown user: "nobody")',
        "source": "dsn",
    }
    row = await stack.pool.fetchrow(
        "SELECT via, outcome, report, raw FROM bounce_notices WHERE message_id = $1",
        sent.message_id,
    )
    assert row is not None
    assert dict(row) == {"via": "lmtp", "outcome": "recorded", "report": "dsn", "raw": None}
    # The relay delivers it again (its reply was lost): taken once.
    again = await asyncio.to_thread(deliver, listener.port, [to.upper()], raw, False)
    assert again == {"data": (250, "2.0.0 taken (duplicate)")}
    assert len(await errors_of(stack, sent.message_id)) == 1


async def test_a_delay_is_a_soft_bounce_that_suppresses_nothing(
    stack: Stack, listener: BounceListener
) -> None:
    sent = await mailed_and_waiting(stack)
    to = bounce_address(sent.message_id, SECRET, DOMAIN)
    raw = postfix_dsn(
        to,
        sent.message_id,
        sent.email,
        action="delayed",
        status="4.4.1",
        diagnostic="X-Postfix; connect to mx.example.org[192.0.2.7]:25: Connection timed out",
        subject="Delayed Mail (still being retried)",
    )
    answer = await asyncio.to_thread(deliver, listener.port, [to], raw, False)  # over SMTP
    assert answer == {"data": (250, "2.0.0 taken (recorded)")}
    [error] = await errors_of(stack, sent.message_id)
    assert error["kind"] == "soft_bounce" and error["source"] == "dsn"
    await asyncio.sleep(1)  # the dispatcher has delivered it meanwhile
    assert (await participant(stack.http, sent.key, sent.contact))["status"] == "running"
    assert (await stack.http.get(f"/contacts/{sent.contact}")).json()["bounced"] is False


async def test_forged_and_unparseable_notices_are_kept_and_record_nothing(
    stack: Stack, listener: BounceListener
) -> None:
    sent = await mailed_and_waiting(stack)
    genuine = bounce_address(sent.message_id, SECRET, DOMAIN)
    forged = bounce_address(sent.message_id, "a guessed secret", DOMAIN)
    cases = [
        (forged, postfix_dsn(forged, sent.message_id, sent.email), "forged: "),
        (genuine, auto_reply(genuine), "unparseable: an auto-reply"),
        (
            genuine,
            postfix_dsn(genuine, uuid.uuid4(), sent.email),
            "inconsistent: the returned message's Message-ID",
        ),
        (f"postmaster@{DOMAIN}", b"Subject: hi\r\n\r\nbuy now\r\n", "unparseable: no message/"),
    ]
    for to, raw, _ in cases:
        answer = await asyncio.to_thread(deliver, listener.port, [to], raw)
        assert answer == {"data": (250, "2.0.0 taken (kept)")}
    assert await errors_of(stack, sent.message_id) == []
    assert (await stack.http.get(f"/contacts/{sent.contact}")).json()["bounced"] is False
    listed = (await stack.http.get("/bounces/kept", params={"limit": 4})).json()
    assert [k["envelope_to"] for k in listed] == [[to] for to, _, _ in reversed(cases)]
    for kept, (_, raw, reason) in zip(listed, reversed(cases), strict=True):
        assert kept["reason"].startswith(reason), kept
        assert kept["via"] == "lmtp" and kept["size"] == len(raw)
        stored = await stack.http.get(f"/bounces/kept/{kept['id']}")
        assert stored.status_code == 200 and stored.content == raw
        assert stored.headers["content-type"] == "message/rfc822"
    # The forged one and the spam name no message; the genuine ones name theirs.
    mid = str(sent.message_id)
    assert [k["message_id"] for k in listed] == [None, mid, mid, None]
    assert listed[2]["subject"] == "Out of office: Hello Ann"
    page = (await stack.http.get("/bounces/kept", params={"before": listed[1]["id"]})).json()
    assert page[0]["id"] == listed[2]["id"]
    assert (await stack.http.get("/bounces/kept/999999999")).status_code == 404
    assert (await stack.http.get("/bounces/kept", headers={"Authorization": ""})).status_code == 401


async def test_the_listener_takes_its_domain_only_and_one_lmtp_recipient(
    stack: Stack, listener: BounceListener
) -> None:
    to = bounce_address(uuid.uuid4(), SECRET, DOMAIN)
    refused = await asyncio.to_thread(
        deliver, listener.port, ["someone@example.com"], b"Subject: x\r\n\r\nx\r\n"
    )
    assert refused["someone@example.com"][0] == 550
    answer = await asyncio.to_thread(
        deliver, listener.port, [to, f"other@{DOMAIN}"], postfix_dsn(to, uuid.uuid4())
    )
    assert answer[f"other@{DOMAIN}"][0] == 452  # LMTP: one reply after DATA, one recipient
    assert answer["data"][0] == 250


async def test_the_relay_is_asked_to_try_again_when_the_database_is_away(
    stack: Stack,
) -> None:
    pool = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    await pool.close()
    async with BounceListener(Intake(pool, SECRET, DOMAIN), port=0) as down:
        to = bounce_address(uuid.uuid4(), SECRET, DOMAIN)
        answer = await asyncio.to_thread(deliver, down.port, [to], postfix_dsn(to, uuid.uuid4()))
    assert answer["data"][0] == 451


# Base64 whose padding is wrong: the stdlib's decoder raises binascii.Error on it.
BAD_PADDING = "UmVwb3J0aW5nLU1UQTogZG5zOyB"


async def test_a_crafted_notice_is_taken_and_never_retried_for_ever(
    stack: Stack, listener: BounceListener
) -> None:
    """A delivery-status part marked base64 with bad padding made the parser raise, and a
    NUL in Diagnostic-Code made PostgreSQL refuse the detail: either answered 451 (with
    a traceback) to every attempt, and the relay kept trying for days. Now the first is
    kept with the reason and the second recorded without the NUL; 451 is for outages."""
    sent = await mailed_and_waiting(stack)
    to = bounce_address(sent.message_id, SECRET, DOMAIN)
    padded = base64_dsn(to, sent.message_id, encoded=BAD_PADDING)
    answer = await asyncio.to_thread(deliver, listener.port, [to], padded)
    assert answer == {"data": (250, "2.0.0 taken (kept)")}
    kept = await stack.pool.fetchrow(
        "SELECT outcome, reason, message_id FROM bounce_notices WHERE digest = $1",
        hashlib.sha256(padded).digest(),
    )
    assert kept is not None and dict(kept) == {
        "outcome": "kept",
        "reason": "unparseable: the mail does not parse: Error: Incorrect padding",
        "message_id": sent.message_id,
    }
    diagnostic = "smtp; 550 5.1.1 <ann@example.org>: no\x00 such user"
    raw = postfix_dsn(to, sent.message_id, sent.email, diagnostic=diagnostic)
    answer = await asyncio.to_thread(deliver, listener.port, [to], raw)
    assert answer == {"data": (250, "2.0.0 taken (recorded)")}
    [error] = await errors_of(stack, sent.message_id)
    assert error == {
        "kind": "hard_bounce",
        "detail": "failed, 5.1.1 (smtp; 550 5.1.1 <address>: no such user)",
        "source": "dsn",
    }


# -- the IMAP poller, against a small IMAP server speaking what imaplib asks -------------------


@dataclass
class Mailbox:
    messages: dict[int, bytes]
    deleted: set[int] = field(default_factory=set)
    logins: list[tuple[str, str]] = field(default_factory=list)


async def imap_server(box: Mailbox) -> asyncio.Server:
    """IMAP4rev1 as far as the poller uses it: LOGIN, SELECT, UID SEARCH/FETCH/STORE,
    EXPUNGE, CLOSE, LOGOUT."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str | bytes) -> None:
            writer.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")

        send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready")
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            tag, _, rest = line.partition(" ")
            words = rest.split(" ")
            command = words[0].upper()
            if command == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1 AUTH=PLAIN")
            elif command == "LOGIN":
                box.logins.append((words[1].strip('"'), words[2].strip('"')))
            elif command == "SELECT":
                send(f"* {len(box.messages)} EXISTS")
                send("* OK [UIDVALIDITY 7] ok")
                send(f"{tag} OK [READ-WRITE] SELECT completed")
                continue
            elif command == "UID" and words[1].upper() == "SEARCH":
                uids = [u for u in sorted(box.messages) if u not in box.deleted]
                send("* SEARCH " + " ".join(map(str, uids)))
            elif command == "UID" and words[1].upper() == "FETCH":
                uid = int(words[2])
                raw = box.messages[uid]
                send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(raw)}}}".encode() + b"\r\n")
                send(raw + b")\r\n")
            elif command == "UID" and words[1].upper() == "STORE":
                box.deleted.add(int(words[2]))
            elif command == "EXPUNGE":
                for uid in sorted(box.deleted):
                    box.messages.pop(uid, None)
                box.deleted.clear()
            elif command == "LOGOUT":
                send("* BYE")
                send(f"{tag} OK LOGOUT completed")
                break
            send(f"{tag} OK {command} completed")
            await writer.drain()
        await writer.drain()
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


async def test_the_imap_poller_records_a_complaint_and_empties_the_mailbox(
    stack: Stack,
) -> None:
    """A feedback loop's complaint, delivered to a fixed address of the mailbox: the
    report's Original-Mail-From (the bounce address) names the message."""
    sent = await mailed_and_waiting(stack)
    complaint = arf_complaint(
        sent.message_id, bounce_address(sent.message_id, SECRET, DOMAIN), to=f"fbl@{DOMAIN}"
    )
    spam = f"To: fbl@{DOMAIN}\r\nSubject: cheap\r\n\r\nspam {uuid.uuid4()}\r\n".encode()
    box = Mailbox({3: complaint, 5: spam})
    server = await imap_server(box)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"imap://fbl%40{DOMAIN}:p%40ss@127.0.0.1:{port}/Bounces"
        poller = ImapPoller(Intake(stack.pool, SECRET, DOMAIN), ImapMailbox.parse(url))
        assert await poller.poll() == 2
    finally:
        server.close()
    assert box.logins == [(f"fbl@{DOMAIN}", "p@ss")]
    assert box.messages == {}  # both taken, then deleted
    view = await wait_until_done(stack.http, sent.key, sent.contact)
    assert view["history"][1]["outcome"] == "delivery_error"
    [error] = await errors_of(stack, sent.message_id)
    assert error == {
        "kind": "complaint",
        "detail": "abuse report by SomeGenerator/1.0",
        "source": "arf",
    }
    outcomes = await stack.pool.fetch(
        "SELECT outcome FROM bounce_notices WHERE via = 'imap' AND digest = ANY($1)",
        [hashlib.sha256(raw).digest() for raw in (complaint, spam)],
    )
    assert sorted(r["outcome"] for r in outcomes) == ["kept", "recorded"]


async def test_no_mail_stops_the_imap_poller_but_an_outage(stack: Stack) -> None:
    """The poller took the mails in UID order and stopped at the first that failed, for
    good: a bad base64 part, or an address PostgreSQL refuses (a NUL in Delivered-To),
    kept every later notice from being read. Now each is kept with the reason and
    deleted, and the complaint after them recorded; PostgreSQL away leaves them all."""
    sent = await mailed_and_waiting(stack)
    address = bounce_address(sent.message_id, SECRET, DOMAIN)
    padded = base64_dsn(address, sent.message_id, encoded=BAD_PADDING)
    nul = f"Subject: odd {uuid.uuid4()}\r\n\r\nhi\r\n".encode()
    nul = b"Delivered-To: odd\x00one@" + DOMAIN.encode() + b"\r\n" + nul
    complaint = arf_complaint(sent.message_id, address, to=f"fbl@{DOMAIN}")
    box = Mailbox({2: padded, 4: nul, 9: complaint})
    server = await imap_server(box)
    url = f"imap://u:p@127.0.0.1:{server.sockets[0].getsockname()[1]}/INBOX"
    down = await create_pool(stack.settings.database_url, min_size=1, max_size=1)
    await down.close()
    try:
        with pytest.raises(Exception) as away:  # an outage: the next poll tries again
            await ImapPoller(Intake(down, SECRET, DOMAIN), ImapMailbox.parse(url)).poll()
        assert outage_of(away.value) == "PostgreSQL"
        assert sorted(box.messages) == [2, 4, 9] and not box.deleted
        poller = ImapPoller(Intake(stack.pool, SECRET, DOMAIN), ImapMailbox.parse(url))
        assert await poller.poll() == 3
    finally:
        server.close()
    assert box.messages == {}
    [error] = await errors_of(stack, sent.message_id)
    assert error["kind"] == "complaint"
    rows = {
        bytes(r["digest"]): r
        for r in await stack.pool.fetch(
            "SELECT digest, outcome, reason, envelope_to FROM bounce_notices"
            " WHERE digest = ANY($1)",
            [hashlib.sha256(raw).digest() for raw in (padded, nul)],
        )
    }
    first = rows[hashlib.sha256(padded).digest()]
    assert (first["outcome"], first["reason"]) == (
        "kept",
        "unparseable: the mail does not parse: Error: Incorrect padding",
    )
    second = rows[hashlib.sha256(nul).digest()]
    assert second["outcome"] == "kept", dict(second)
    assert second["reason"].startswith("not stored as kept: CharacterNotInRepertoireError")
    assert second["envelope_to"] == [f"odd one@{DOMAIN}"]  # the NUL left out


def test_an_imap_url_is_read_or_refused() -> None:
    box = ImapMailbox.parse("imaps://bounces%40shop.example.com:s3cret@imap.example.com")
    assert (box.host, box.port, box.tls, box.user, box.password, box.mailbox) == (
        "imap.example.com",
        993,
        True,
        "bounces@shop.example.com",
        "s3cret",
        "INBOX",
    )
    assert "s3cret" not in repr(box) and "s3cret" not in str(box)  # logs, tracebacks
    assert ImapMailbox.parse("imap://u:p@h:1143/Bounces/DSN").mailbox == "Bounces/DSN"
    for bad in ("http://u:p@h", "imaps://h/INBOX", "imaps://u@h"):
        with pytest.raises(ValueError, match=re.escape("JOURNEYS_BOUNCE_IMAP_URL")):
            ImapMailbox.parse(bad)


async def test_journeys_bounces_serve_and_kept(stack: Stack) -> None:
    """The command as deployed: `journeys bounces serve` from the environment takes a
    notice over LMTP; `journeys bounces kept` lists it through the API."""
    env = {
        **os.environ,
        "DATABASE_URL": stack.settings.database_url,
        "JOURNEYS_SECRET": SECRET,
        "JOURNEYS_LOG_LEVEL": "warning",
    }
    env.pop("JOURNEYS_BOUNCE_DOMAIN", None)
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "journeys.cli", "bounces", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await refused.communicate()
    assert refused.returncode == 1 and "set JOURNEYS_BOUNCE_DOMAIN" in err.decode()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "journeys.cli", "bounces", "serve", "--listen", f"127.0.0.1:{port}",
        env={**env, "JOURNEYS_BOUNCE_DOMAIN": DOMAIN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert banner.decode().strip() == (
            f"journeys bounces: SMTP/LMTP for {DOMAIN} on 127.0.0.1:{port}"
        )
        to = bounce_address(uuid.uuid4(), "not the secret", DOMAIN)
        raw = postfix_dsn(to, uuid.uuid4())
        answer = await asyncio.to_thread(deliver, port, [to], raw)
        assert answer == {"data": (250, "2.0.0 taken (kept)")}
    finally:
        proc.terminate()
        await proc.wait()
    kept = (await stack.http.get("/bounces/kept", params={"limit": 1})).json()[0]
    assert kept["envelope_to"] == [to] and kept["reason"].startswith("forged")
    code, out, _ = await run_cli(stack.base_url, API_KEY, "bounces", "kept", "--limit", "1")
    assert code == 0 and "forged" in out and str(kept["id"]) in out
    code, out, _ = await run_cli(
        stack.base_url, API_KEY, "bounces", "kept", "--show", str(kept["id"])
    )
    assert code == 0 and out.encode() == raw
