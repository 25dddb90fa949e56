"""The fault suite's SMTP server, run as `python -m bench.faultprocs recorder ...`.

A real SMTP server (aiosmtpd) in a process of its own, so the suite can stop it
(SIGTERM) and start it again on the same port. For every message it accepts it
appends one line to the record file, `<unix time> <Message-ID header>`, and fsyncs
it before answering 250: a client told "accepted" always finds its message in the
file, whenever the process is stopped afterwards.

`--delay` makes it a slow relay: it holds each message that long after the final
dot before it commits and answers. A worker killed meanwhile never hears the 250
though the relay took the message, like a real relay that had already queued it.
That is the case the suite's duplicate bound is about, and the delay makes each of
the worker's connections be inside such a transaction when it is killed.

Prints `READY <port>` once it serves; SIGTERM stops it at once: a transaction still
in flight is dropped or answered 421, and is not recorded either way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import IO

from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def message_id_of(data: bytes) -> str:
    """The Message-ID header of a raw message ('-' when it has none)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else "-"


class _RecordHandler:
    def __init__(self, record: IO[str], delay: float) -> None:
        self.record, self.delay = record, delay
        self.stopping = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.stopping:
            # What a relay going down answers: "try later", and the message is not taken.
            return "421 4.3.2 Shutting down, try again later"
        # No await between the write and the reply: a stop finds the message either
        # recorded and answered or neither.
        self.record.write(f"{time.time():.6f} {message_id_of(envelope.original_content or b'')}\n")
        self.record.flush()
        os.fsync(self.record.fileno())
        return "250 Message accepted for delivery"


async def recorder(record_path: Path, port: int, delay: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(record_path, "a", encoding="ascii") as record:
        handler = _RecordHandler(record, delay)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="fault-recorder"), "127.0.0.1", port
        )
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        handler.stopping = True
        server.close()
    # Leaving asyncio.run cancels the sessions still open; one that wakes up before that
    # answers 421 and records nothing.


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faultprocs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("recorder", help="SMTP server recording each accepted Message-ID")
    p.add_argument("--record", required=True, type=Path, help="file to append lines to")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--delay", type=float, default=0.0, help="seconds to hold each message")
    args = parser.parse_args(argv)
    asyncio.run(recorder(args.record, args.port, args.delay))


if __name__ == "__main__":
    main()
