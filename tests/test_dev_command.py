"""`journeys dev` as a user runs it: everything starts from one command, stops
cleanly on Ctrl-C, and a journey asleep across a restart still wakes up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from journeys.devstack import free_port
from journeys.mailsink import MailSink, list_mail
from tests.builders import linear_journey, mail, wait
from tests.helpers import create_contact, enrol, publish, read_mail, wait_until_done


async def start_dev(home: Path, ports: dict[str, int], **extra_env: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JOURNEYS_API_KEY": "dev-key"}
    for name in ("DATABASE_URL", "SMTP_URL", "SMS_URL"):
        env.pop(name, None)
    env.update(extra_env)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journeys.cli",
            "dev",
            "--data-dir",
            str(home),
            "--port",
            str(ports["api"]),
            "--temporal-port",
            str(ports["temporal"]),
            "--ui-port",
            str(ports["ui"]),
            "--smtp-port",
            str(ports["smtp"]),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            try:
                if (await http.get(f"http://127.0.0.1:{ports['api']}/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    process.kill()
    raise AssertionError("journeys dev did not become healthy")


async def stop_dev(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_dev_stack_survives_a_restart(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp")}
    home = tmp_path / "dev"
    process = await start_dev(home, ports)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ports['api']}", headers={"Authorization": "Bearer dev-key"}
    ) as http:
        await publish(
            http,
            linear_journey("nap", "Nap", ("nap", wait("PT8S")), ("hello", mail("Awake"))),
        )
        email = f"nap-{uuid.uuid4().hex[:6]}@example.com"
        contact = await create_contact(http, email=email)
        await enrol(http, "nap", contact)
        output = await stop_dev(process)
        assert f"http://localhost:{ports['api']}" in output and "dev-key" in output
        async with httpx.AsyncClient() as probe:  # everything is down, the UI too
            for port in (ports["api"], ports["ui"]):
                try:
                    await probe.get(f"http://127.0.0.1:{port}/", timeout=1)
                    raise AssertionError(f"port {port} still answers")
                except httpx.TransportError:
                    pass
        assert list((home / "mail").glob("*.eml")) == []

        process = await start_dev(home, ports)
        try:
            assert (await http.get(f"/contacts/{contact}")).json()["email"] == email
            await read_mail(http, email, "Awake", timeout=30)
            view = await wait_until_done(http, "nap", contact)
            assert [h["step"] for h in view["history"]] == ["nap", "hello", "end"]

            # An SMS step reaches the dev sink, listed at /dev/sms.
            await publish(
                http,
                linear_journey(
                    "text", "Text", ("sms", {"type": "send_sms", "text": "Hi from dev"})
                ),
            )
            texted = (await http.post("/contacts", json={"phone": "+31 6 12345678"})).json()
            await enrol(http, "text", texted["id"])
            await wait_until_done(http, "text", texted["id"])
            (sms,) = (await http.get("/dev/sms")).json()
            assert (sms["to"], sms["text"], sms["segments"]) == ("+31612345678", "Hi from dev", 1)
        finally:
            await stop_dev(process)


async def test_dev_sends_to_the_relay_named_by_smtp_url(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp", "relay")}
    home = tmp_path / "dev"
    async with MailSink(tmp_path / "relay", port=ports["relay"]):
        process = await start_dev(home, ports, SMTP_URL=f"smtp://127.0.0.1:{ports['relay']}")
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports['api']}",
                headers={"Authorization": "Bearer dev-key"},
            ) as http:
                await publish(
                    http, linear_journey("relay", "Relay", ("hello", mail("Via the relay")))
                )
                email = f"relay-{uuid.uuid4().hex[:6]}@example.com"
                contact = await create_contact(http, email=email)
                await enrol(http, "relay", contact)
                await wait_until_done(http, "relay", contact)
                assert (await http.get("/dev/mail")).status_code == 404  # no sink of its own
        finally:
            output = await stop_dev(process)
    received = list_mail(tmp_path / "relay")
    assert [m["subject"] for m in received if email in m["to"]] == ["Via the relay"]
    assert not list((home / "mail").glob("*.eml"))
    assert f"sent to smtp://127.0.0.1:{ports['relay']} (SMTP_URL)" in output
    assert "Mail sink" not in output
    assert "/dev/sms" in output  # no SMS_URL: the dev SMS sink
