"""One side of the mail pair, in a fresh process: `python -m bench.mailpair SIDE ...`.

The product sends from its worker, a process of its own; so does each side
here, so that neither pays for the bench client's heap (a long-lived process
full of earlier results makes every allocation-heavy send slower).

Prints `P <done>` lines while it runs and one `RESULT <json>` line at the end:
the load summary, every latency, and the CPU seconds of the measured loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from email import policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from bench.load import closed_loop

SIDES = ("floor", "floor-new-connection", "product")


def smtp_options(smtp_url: str) -> dict[str, Any]:
    """aiosmtplib connection options for SMTP_URL, read as the product reads it."""
    parts = urlsplit(smtp_url)
    tls = parts.scheme == "smtps"
    return {
        "hostname": parts.hostname or "localhost",
        "port": parts.port or (465 if tls else 25),
        "use_tls": tls,
        "start_tls": False if tls else None,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "timeout": 30,
    }


def prerendered(count: int, sender: str, subject: str, html: str) -> list[tuple[str, bytes]]:
    """Finished messages as bytes, rendered from the bench's template like the product's."""
    from journeys.htmltext import html_to_text
    from journeys.templates import render

    out = []
    for i in range(count):
        fields = {"first_name": f"Reader{i}"}
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = sender
        msg["To"] = f"floor-{i}@example.com"
        msg["Subject"] = render(subject, fields)
        body = render(html, fields, html=True)
        msg.set_content(html_to_text(body))
        msg.add_alternative(body, subtype="html")
        out.append((str(msg["To"]), msg.as_bytes()))
    return out


class _Reporter:
    """Progress lines for the parent, at most a few per second."""

    def __init__(self) -> None:
        self.done = 0
        self._last = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last > 0.25:
            self._last = now
            print(f"P {self.done}", flush=True)


async def _floor(args: argparse.Namespace, reuse: bool) -> tuple[Any, float]:
    from bench.pairs import HTML, SUBJECT
    from journeys.settings import Settings

    options = smtp_options(args.smtp_url)
    sender = Settings.model_fields["mail_from"].default  # the product's default sender
    mails = prerendered(args.warmup + args.n, sender, SUBJECT, HTML)
    envelope_from = "journeys@localhost"

    async def alone(i: int) -> None:
        to, data = mails[i]
        await aiosmtplib.send(data, sender=envelope_from, recipients=[to], **options)

    await closed_loop(args.warmup, args.concurrency, alone)
    if not reuse:
        start = time.process_time()
        result = await closed_loop(
            args.n, args.concurrency, lambda i: alone(args.warmup + i), _Reporter()
        )
        return result, time.process_time() - start

    lanes = max(1, min(args.concurrency, args.n))
    conns = [aiosmtplib.SMTP(**options) for _ in range(lanes)]
    await asyncio.gather(*(s.connect() for s in conns))
    free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for s in conns:
        free.put_nowait(s)

    async def over_open(i: int) -> None:
        smtp = await free.get()
        try:
            to, data = mails[args.warmup + i]
            await smtp.sendmail(envelope_from, [to], data)
        finally:
            free.put_nowait(smtp)

    try:
        start = time.process_time()
        result = await closed_loop(args.n, lanes, over_open, _Reporter())
        return result, time.process_time() - start
    finally:
        for s in conns:
            try:
                await s.quit()
            except aiosmtplib.SMTPException:
                s.close()


async def _product(args: argparse.Namespace) -> tuple[Any, float]:
    from activities.email import EmailActivities
    from activities.smtp import SmtpSender
    from bench.pairs import HTML, SUBJECT
    from journeys.db import create_pool
    from journeys.logging import configure_logging
    from journeys.models import SendEmailInput
    from journeys.settings import Settings

    configure_logging("info")  # the worker's default: one JSON line per message, on stderr
    settings = Settings(
        database_url=args.database_url,
        smtp_url=args.smtp_url,
        secret=args.secret,
        public_url=args.public_url,
        smtp_connections=args.concurrency,  # the floor's connections: like for like
    )
    contacts = [uuid.UUID(c) for c in args.contacts.split(",")]
    pool = await create_pool(settings.database_url, max_size=20)  # as the worker's
    sender = SmtpSender(settings.smtp_url, connections=settings.smtp_connections)
    email = EmailActivities(pool, settings, sender)

    async def send(i: int) -> None:
        result = await email.send_email(
            SendEmailInput(
                idempotency_key=f"{args.key}/{i}",
                workflow_id=f"journey/{args.key}/{contacts[i]}",
                journey_key=args.key,
                version=1,
                contact_id=str(contacts[i]),
                step="mail",
                subject=SUBJECT,
                html=HTML,
            )
        )
        if result.status != "sent":
            raise RuntimeError(f"not sent: {result.reason}")

    try:
        await closed_loop(args.warmup, args.concurrency, send)
        start = time.process_time()
        result = await closed_loop(
            args.n, args.concurrency, lambda i: send(args.warmup + i), _Reporter()
        )
        return result, time.process_time() - start
    finally:
        await sender.close()
        await pool.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.side == "product":
        result, cpu = await _product(args)
    else:
        result, cpu = await _floor(args, reuse=args.side == "floor")
    return {**result.summary(), "latencies": result.latencies, "cpu_seconds": cpu}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mailpair")
    parser.add_argument("side", choices=SIDES)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--smtp-url", required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--secret")
    parser.add_argument("--public-url")
    parser.add_argument("--key", default="bench-mail")
    parser.add_argument("--contacts", default="", help="comma-separated ids, warm-up first")
    args = parser.parse_args(argv)
    summary = asyncio.run(run(args))
    print("RESULT " + json.dumps(summary), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
