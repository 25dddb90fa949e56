"""The logs of an end-to-end run hold ids, never a contact's address, name or number.

`journeys dev` runs as a user (or an operator) runs the product: API, worker, dispatcher
and the dev sinks in one process, logging at `info` (the level of `journeys api` and
`journeys worker`) to its stderr, which this test reads whole. The run: a mail with a
tracked link, a click, a follow-up that notifies a colleague about the contact, an SMS, a
profile update, an event, and a second contact whose address the mail server refuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from journeys.devstack import free_port
from tests.builders import journey
from tests.helpers import enrol, links_in, publish, read_mail, wait_for_step, wait_until_done


def _letters(n: int) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=n))


def _digits(n: int) -> str:
    return "".join(random.choices(string.digits, k=n))


async def _dev(home: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], Path]:
    """`journeys dev` logging at info; its stderr goes to a file (a pipe nobody reads
    would fill up and stop it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEYS_", "DATABASE_"))}
    for name in ("SMTP_URL", "SMS_URL"):
        env.pop(name, None)
    env.update(JOURNEYS_API_KEY="dev-key", JOURNEYS_LOG_LEVEL="info")
    home.mkdir(parents=True)
    stderr = home.parent / "stderr.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "journeys.cli", "dev", "--data-dir", str(home)]
        + [f"--{name}={port}" for name, port in ports.items()],
        env=env,
        stdout=(home.parent / "stdout.log").open("wb"),
        stderr=stderr.open("wb"),
    )
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert process.poll() is None, stderr.read_text()
            try:
                if (await http.get(f"http://127.0.0.1:{ports['port']}/healthz")).status_code == 200:
                    return process, stderr
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    process.kill()
    raise AssertionError("journeys dev did not become healthy")


def privacy_journey(key: str) -> dict[str, Any]:
    return journey(
        key,
        steps={
            "mail1": {
                "type": "send_email",
                "subject": "Hello {{ contact.first_name }} {{ contact.last_name }}",
                "html": "<p>Dear {{ contact.first_name }}, "
                '<a href="https://example.com/offer?for={{ contact.email }}">the offer</a></p>',
                "follow_ups": [
                    {
                        "key": "tell",
                        "on": "clicked",
                        "wait": "PT0M",
                        "start": "notify",
                        "steps": {
                            "notify": {
                                "type": "notify",
                                "to": "owner",
                                "subject": "{{ contact.first_name }} {{ contact.last_name }}"
                                " ({{ contact.email }}) clicked",
                                "body": "Call {{ contact.first_name }} at {{ contact.phone }}.",
                                "next": "end",
                            },
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
                "on_event": "text",
                "on_timeout": "done",
            },
            "text": {
                "type": "send_sms",
                "text": "Thanks {{ contact.first_name }} {{ contact.last_name }}",
                "next": "mark",
            },
            "mark": {
                "type": "update_contact",
                "set": {"clicked_offer": True},
                "next": "wait_order",
            },
            "wait_order": {
                "type": "wait_for_event",
                "event": "custom",
                "name": "ordered",
                "timeout": "P1D",
                "on_event": "done",
                "on_timeout": "done",
            },
            "done": {"type": "end"},
        },
    )


async def test_the_logs_of_a_run_carry_ids_and_no_personal_data(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("port", "temporal-port", "ui-port", "smtp-port")}
    process, stderr = await _dev(tmp_path / "dev", ports)
    first, last = f"Ysolde{_letters(6)}", f"Quarrington{_letters(6)}"
    email = f"ysq.{_letters(8)}@example.org"
    phone = f"+31612{_digits(6)}"
    refused = {
        "email": f"bounce-{_letters(8)}@example.org",
        "first_name": f"Bartholomew{_letters(6)}",
        "last_name": f"Vanderbounce{_letters(6)}",
    }
    owner = {"email": f"owner.{_letters(8)}@example.org", "name": f"Ottoline {_letters(8)}"}
    key = f"privacy-{uuid.uuid4().hex[:6]}"
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['port']}",
            headers={"Authorization": "Bearer dev-key"},
            timeout=30,
        ) as http:
            made = await http.post(
                "/users", json={"key": "owner", "time_zone": "Europe/Amsterdam", **owner}
            )
            assert made.status_code in (200, 201), made.text
            await publish(http, privacy_journey(key))
            ids = []
            for person in (
                {"email": email, "first_name": first, "last_name": last, "phone": phone},
                refused,
            ):
                response = await http.post(
                    "/contacts", json={"external_id": _letters(10), **person}
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            contact, bounced = ids
            await enrol(http, key, contact, bounced)

            msg = await read_mail(http, email, f"Hello {first} {last}")
            await wait_for_step(http, key, contact, "wait_click")
            async with httpx.AsyncClient() as reader:
                assert (await reader.get(links_in(msg)[0])).status_code == 302
            await read_mail(http, owner["email"], f"{first} {last} ({email}) clicked")
            await wait_for_step(http, key, contact, "wait_order")
            event = await http.post(
                "/events",
                json={"contact_id": contact, "name": "ordered", "data": {"for": first}},
            )
            assert event.status_code == 202, event.text
            view = await wait_until_done(http, key, contact)
            assert [h["step"] for h in view["history"]] == [
                "mail1",
                "wait_click",
                "text",
                "mark",
                "wait_order",
                "done",
            ]
            (sms,) = [m for m in (await http.get("/dev/sms")).json() if m["to"] == phone]
            assert sms["text"] == f"Thanks {first} {last}"
            refusal = (await http.get(f"/journeys/{key}/participants/{bounced}")).json()
            assert refusal["messages"][0]["status"] == "rejected"
            mail1 = view["messages"][0]["id"]
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.wait, 60)

    logs = stderr.read_text()
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    secrets = [email, first, last, phone, phone[3:], *refused.values(), *owner.values()]
    for secret in secrets:
        leaks = [line for line in lines if secret.lower() in line.lower()]
        assert not leaks, f"{secret!r} is in the logs:\n" + "\n".join(leaks[:5])
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]}") from None
    sent = [r for r in records if r.get("event") == "send.sent" and r.get("journey") == key]
    assert {
        (r["step"], r["message_id"], r["participant"]) for r in sent if r["step"] == "mail1"
    } == {("mail1", mail1, contact)}
    assert {r["step"] for r in sent} == {"mail1", "notify", "text"}
    assert all(r["participant"] == contact for r in sent)
