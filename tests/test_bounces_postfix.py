"""Bounces end to end with a real relay: Debian's Postfix (installed by infra/postfix.sh
when the tests run as root) relays the product's mail; a mail to an unknown user of its
local domain is accepted, then bounced by Postfix's local delivery as a DSN to the
mail's envelope sender, `bounces+<token>@bounces.journeys.test`, which a transport map
sends to the bounce listener over LMTP: the message gets its hard bounce through the
outbox, the journey waiting for one goes on, and the address is suppressed.

Postfix runs from a temporary directory with its own main.cf and master.cf
(`postfix -c <dir> start`: its own queue, a free port on 127.0.0.1, a log file); the
test is skipped, saying why, where Postfix is missing or cannot be started (not root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from journeys.bounces import BounceListener, Intake
from journeys.devstack import free_port
from journeys.tokens import bounce_address
from tests.builders import journey, mail
from tests.conftest import SECRET, Stack
from tests.helpers import api_on, create_contact, enrol, publish, wait_until_done
from worker import running_worker

DOMAIN = "bounces.journeys.test"
LOCAL_DOMAIN = "local.journeys.test"  # Postfix's own: an unknown user there bounces


def _postfix_command() -> str | None:
    named = os.environ.get("JOURNEYS_POSTFIX")
    if named:
        return named
    return shutil.which("postfix") or (
        "/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None
    )


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.journeys.test
myorigin = $myhostname
mydestination = {local_domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Accept any local user at RCPT, so that an unknown one is bounced after the mail was
# taken, as a DSN (with the default maps Postfix refuses it at RCPT: a 550 the send path
# records by itself).
local_recipient_maps =
alias_maps =
alias_database =
# The bounce domain goes to the product's listener: the line the README gives.
transport_maps = inline:{{ {domain}=lmtp:inet:127.0.0.1:{listener_port} }}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

# Postfix's services, none chrooted (the queue is a temporary directory).
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp       unix - - n - - smtp
relay      unix - - n - - smtp
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
local      unix - n n - - local
lmtp       unix - - n - - lmtp
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


@dataclass
class Postfix:
    dir: Path
    port: int

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


def _start(command: str, folder: Path, port: int, listener_port: int) -> Postfix:
    folder.chmod(0o755)  # Postfix's own user reads its queue below it
    (folder / "queue").mkdir()
    (folder / "data").mkdir()
    shutil.chown(folder / "data", "postfix")
    params = {"dir": folder, "domain": DOMAIN, "local_domain": LOCAL_DOMAIN}
    (folder / "main.cf").write_text(MAIN_CF.format(**params, listener_port=listener_port))
    (folder / "master.cf").write_text(MASTER_CF.format(port=port))
    started = subprocess.run(
        [command, "-c", str(folder), "start"], capture_output=True, text=True, timeout=30
    )
    postfix = Postfix(folder, port)
    if started.returncode != 0:
        raise RuntimeError(f"postfix start: {started.stderr.strip()} {postfix.log()[-2000:]}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return postfix
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"Postfix does not listen on {port}: {postfix.log()[-2000:]}")


@pytest.fixture(scope="module")
def postfix_command() -> Iterator[str]:
    command = _postfix_command()
    if command is None:
        pytest.skip(
            "Postfix is not installed: infra/postfix.sh (sourced by infra/test.sh) installs"
            " Debian's postfix when run as root, or set JOURNEYS_POSTFIX"
        )
    if os.geteuid() != 0:
        pytest.skip("Postfix's master process must start as root; run the tests as root")
    yield command


@dataclass
class Relay:
    postfix: Postfix
    listener: BounceListener


@pytest.fixture(scope="module")
async def relay(
    stack: Stack, postfix_command: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Relay]:
    folder = tmp_path_factory.mktemp("postfix")
    async with BounceListener(Intake(stack.pool, SECRET, DOMAIN), port=0) as listener:
        try:
            postfix = await asyncio.to_thread(
                _start, postfix_command, folder, free_port(), listener.port
            )
        except (RuntimeError, OSError, LookupError) as exc:  # no postfix user, no root
            pytest.skip(f"Postfix could not be started: {exc}")
        try:
            yield Relay(postfix, listener)
        finally:
            await asyncio.to_thread(
                subprocess.run,
                [postfix_command, "-c", str(folder), "stop"],
                capture_output=True,
                timeout=30,
            )


async def test_an_unknown_user_bounces_as_a_dsn_and_the_address_is_suppressed(
    stack: Stack, relay: Relay
) -> None:
    started = time.monotonic()
    tag = uuid.uuid4().hex[:8]
    # An API and a worker that send through Postfix with bounce addresses, on a task
    # queue of their own; the session's worker dispatches the events as always.
    settings = stack.settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{relay.postfix.port}",
            "bounce_domain": DOMAIN,
            "task_queue": f"postfix-{tag}",
        }
    )
    key = f"postfix-{tag}"
    email = f"unknown-{tag}@{LOCAL_DOMAIN}"
    async with running_worker(settings, stack.temporal, dispatch=False), api_on(settings) as http:
        await publish(
            http,
            journey(
                key,
                name="Bounce by a real relay",
                start="mail1",
                steps={
                    "mail1": {**mail("Hello"), "next": "wait_error"},
                    "wait_error": {
                        "type": "wait_for_event",
                        "event": "delivery_error",
                        "kinds": ["hard_bounce"],
                        "message": "mail1",
                        "timeout": "PT10M",
                        "on_event": "flag",
                        "on_timeout": "end",
                    },
                    "flag": {"type": "update_contact", "set": {"bounced_dsn": True}, "next": "end"},
                    "end": {"type": "end"},
                },
            ),
        )
        contact = await create_contact(http, email=email)
        await enrol(http, key, contact)
        try:
            view = await wait_until_done(http, key, contact, timeout=40)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nPostfix's log:\n{relay.postfix.log()[-4000:]}") from None
        stored = (await http.get(f"/contacts/{contact}")).json()
    assert [(h["step"], h["outcome"]) for h in view["history"]][:2] == [
        ("mail1", "sent"),
        ("wait_error", "delivery_error"),
    ]
    assert stored["bounced"] is True and stored["fields"]["bounced_dsn"] is True
    message_id = uuid.UUID(view["messages"][0]["id"])
    # Postfix took the mail from the bounce address of its message, and sent the DSN
    # to the listener over LMTP.
    log = relay.postfix.log()
    assert f"from=<{bounce_address(message_id, SECRET, DOMAIN)}>" in log
    assert "relay=local" in log and "unknown user" in log
    assert f"relay=127.0.0.1[127.0.0.1]:{relay.listener.port}" in log
    [error] = await stack.pool.fetch(
        "SELECT data FROM message_events WHERE message_id = $1 AND kind = 'delivery_error'",
        message_id,
    )
    assert error["data"] == {
        "kind": "hard_bounce",
        "detail": f'failed, 5.1.1 (X-Postfix; unknown user: "unknown-{tag}")',
        "source": "dsn",
    }
    notice = await stack.pool.fetchrow(
        "SELECT via, outcome FROM bounce_notices WHERE message_id = $1", message_id
    )
    assert notice is not None and tuple(notice) == ("lmtp", "recorded")
    suppressed = await stack.pool.fetchval(
        "SELECT reason FROM suppressed_addresses WHERE address = $1", email
    )
    assert suppressed == "hard_bounce"
    assert time.monotonic() - started < 60
