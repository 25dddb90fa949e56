"""`journeys` command line: dev, api, worker, enrol, recurring, keys, ops, migrate, bench."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog
from pydantic import ValidationError

from journeys.logging import configure_logging
from journeys.settings import ApiSettings, DatabaseSettings, Settings, missing_variables

log = structlog.get_logger("journeys")


def _stored_secret(path: Path) -> str:
    """A random value kept in `path`, so it survives restarts of the dev stack."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


async def _serve_api(settings: ApiSettings, host: str, port: int) -> None:
    import uvicorn

    from api.main import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


async def dev(args: argparse.Namespace) -> None:
    """PostgreSQL, Temporal + web UI, SMTP sink, worker and API in one process tree."""
    from journeys.devstack import TemporalDevServer, start_postgres
    from journeys.mailsink import MailSink
    from journeys.migrate import migrate
    from journeys.smssink import sink_url
    from worker import running_worker

    home = Path(args.data_dir).resolve()
    home.mkdir(parents=True, exist_ok=True)
    print(f"Journeys dev stack, data in {home}", flush=True)
    postgres = start_postgres(home / "postgres")
    temporal = TemporalDevServer(
        home / "temporal.db",
        port=args.temporal_port,
        ui_port=args.ui_port,
        log_file=home / "temporal.log",
    )
    # A relay named by SMTP_URL gets the mail; without one, the local sink keeps it.
    relay = os.environ.get("SMTP_URL")
    # Likewise an SMS provider named by SMS_URL, else the API's own dev sink.
    sms_provider = os.environ.get("SMS_URL")
    settings = ApiSettings(
        database_url=os.environ.get("DATABASE_URL") or postgres.get_uri(),
        temporal_address=temporal.address,
        smtp_url=relay or f"smtp://127.0.0.1:{args.smtp_port}",
        api_key=os.environ.get("JOURNEYS_API_KEY") or _stored_secret(home / "api-key"),
        secret=os.environ.get("JOURNEYS_SECRET") or _stored_secret(home / "secret"),
        webhook_secret=os.environ.get("JOURNEYS_WEBHOOK_SECRET")
        or _stored_secret(home / "webhook-secret"),
        public_url=os.environ.get("JOURNEYS_PUBLIC_URL") or f"http://localhost:{args.port}",
        dev_mail_dir=None if relay else home / "mail",
        sms_url=sms_provider or sink_url(f"http://127.0.0.1:{args.port}"),
        dev_sms_dir=None if sms_provider else home / "sms",
    )
    await asyncio.to_thread(migrate, settings.database_url)
    async with AsyncExitStack() as stack:
        stack.callback(postgres.cleanup)
        await temporal.start()
        stack.callback(temporal.stop)
        if relay:
            mail = f"Mail         sent to {_without_password(relay)} (SMTP_URL)"
        else:
            await stack.enter_async_context(MailSink(home / "mail", port=args.smtp_port))
            mail = (
                f"Mail sink    smtp://127.0.0.1:{args.smtp_port}, "
                f"read at http://localhost:{args.port}/dev/mail"
            )
        sms = (
            f"SMS          sent through {_without_password(sms_provider)} (SMS_URL)"
            if sms_provider
            else f"SMS sink     read at http://localhost:{args.port}/dev/sms"
        )
        await stack.enter_async_context(running_worker(settings))
        print(
            "\n".join(
                [
                    "",
                    f"  API          http://localhost:{args.port}  (docs: /docs)",
                    f"  API key      {settings.api_key.get_secret_value()}",
                    f"  Webhooks     signed with {home / 'webhook-secret'}"
                    if not os.environ.get("JOURNEYS_WEBHOOK_SECRET")
                    else "  Webhooks     signed with JOURNEYS_WEBHOOK_SECRET",
                    f"  Temporal UI  http://localhost:{args.ui_port}",
                    f"  Temporal     {temporal.address}",
                    f"  {mail}",
                    f"  {sms}",
                    f"  PostgreSQL   {_without_password(settings.database_url)}",
                    "",
                    "Ctrl-C stops everything; sleeping journeys wake up after the next start.",
                ]
            ),
            flush=True,
        )
        await _serve_api(settings, args.host, args.port)
        print("stopping...", flush=True)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class ConfigError(Exception):
    pass


SettingsT = TypeVar("SettingsT", bound=Settings)


async def _migrated_settings(cls: type[SettingsT]) -> SettingsT:
    """Settings from the environment, checked, with the schema brought up to date."""
    from journeys.migrate import migrate as apply

    try:
        settings = cls()
    except ValidationError as exc:
        # Without these a deployment would accept anyone, or sign links it cannot verify.
        missing = missing_variables(exc)
        if not missing:
            raise
        raise ConfigError(f"set {' and '.join(sorted(missing))} in the environment") from None
    await asyncio.to_thread(apply, settings.database_url)
    return settings


def _warn_plain_http(settings: Settings) -> None:
    # RFC 8058 one-click unsubscribe requires an https List-Unsubscribe URL; mailbox
    # providers ignore an http one, and tracking links over http leak to networks.
    if not settings.public_url.lower().startswith("https://"):
        log.warning(
            "public_url.not_https",
            public_url=settings.public_url,
            why="List-Unsubscribe (RFC 8058) needs https; set JOURNEYS_PUBLIC_URL",
        )


async def api(args: argparse.Namespace) -> None:
    settings = await _migrated_settings(ApiSettings)
    _warn_plain_http(settings)
    await _serve_api(settings, args.host, args.port)


async def worker(args: argparse.Namespace) -> None:
    if args.processes < 1:
        raise ValueError(f"--processes {args.processes}: one or more")
    if args.processes > 1:
        from journeys.supervise import supervise

        await _migrated_settings(Settings)  # once, before the processes start
        await supervise(args.processes)
        return
    from worker import run_worker

    await run_worker(await _migrated_settings(Settings))


def migrate(args: argparse.Namespace) -> None:
    from journeys.migrate import migrate as apply

    applied = apply(DatabaseSettings().database_url)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


async def bench(args: argparse.Namespace) -> None:
    if args.faults:
        from bench.faults import N_BENCH, run_faults

        ok = await run_faults(n=args.n or N_BENCH, out=args.out)
    else:
        from bench.run import run_bench

        ok = await run_bench(
            quick=args.quick,
            n=args.n,
            concurrency=args.concurrency,
            out=args.out,
            bulk_n=args.bulk_n,
            only=args.only,
            floors=not args.no_floor,
        )
    if not ok:
        sys.exit(2)


async def enrol(args: argparse.Namespace) -> None:
    from journeys.cli_enrol import api_client, enrol_selection

    async with api_client(args.api_url, args.data_dir) as http:
        await enrol_selection(http, args.journey, args.selection)


async def recurring(args: argparse.Namespace) -> None:
    from rich.console import Console

    from journeys.cli_enrol import api_client
    from journeys.cli_recurring import list_sends, set_status, show_send

    console = Console()
    async with api_client(args.api_url, args.data_dir) as http:
        if args.action == "list":
            await list_sends(http, console)
            return
        if args.key is None:
            raise ValueError(f"journeys recurring {args.action} needs the send's key")
        if args.action == "show":
            await show_send(http, args.key, console)
        else:
            await set_status(
                http, args.key, "stopped" if args.action == "pause" else "live", console
            )


async def keys(args: argparse.Namespace) -> None:
    from rich.console import Console

    from journeys.cli_enrol import api_client
    from journeys.cli_keys import create_key, list_keys, revoke_key

    console = Console()
    async with api_client(args.api_url, args.data_dir) as http:
        if args.action == "create":
            await create_key(http, args.name, args.scope, console)
        elif args.action == "list":
            await list_keys(http, console)
        else:
            await revoke_key(http, args.name, console)


async def ops_command(args: argparse.Namespace) -> None:
    from rich.console import Console

    from journeys import cli_ops
    from journeys.ops import runs_query
    from journeys.settings import TemporalSettings
    from journeys.temporal import connect

    client = await connect(TemporalSettings())
    console = Console()
    if args.action == "failed":
        await cli_ops.show_failed(
            client, console, journey=args.journey, step=args.step, since=args.since
        )
        return
    if args.action == "stuck":
        await cli_ops.show_stuck(
            client, console, journey=args.journey, step=args.step, older_than=args.older_than
        )
        return
    if args.action in ("versions", "promote"):
        deployment = args.deployment or os.environ.get("JOURNEYS_DEPLOYMENT") or "journeys"
        if args.action == "versions":
            await cli_ops.show_versions(client, console, deployment)
        else:
            await cli_ops.promote(client, console, deployment, args.build_id)
        return
    query = runs_query(journey=args.journey, step=args.step, where=args.query)
    if args.action == "replay":
        outcomes = await cli_ops.replay(client, console, query)
        if not all(o.ok for o in outcomes):
            sys.exit(3)  # for a deploy pipeline: some runs would break on this code
        return
    outcomes_ = await cli_ops.reset(
        client, console, query, args.to, reason=args.reason, dry_run=args.dry_run
    )
    if any(o.outcome == "error" for o in outcomes_):
        sys.exit(3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="journeys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dev", help="run the whole embedded stack (no Docker needed)")
    p.add_argument("--data-dir", default=".journeys", help="where data is kept (default .journeys)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="API port")
    p.add_argument("--temporal-port", type=int, default=7233)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--smtp-port", type=int, default=1025)
    p.set_defaults(run=dev)

    p = sub.add_parser("api", help="serve the HTTP API (configured by environment)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(run=api)

    p = sub.add_parser("worker", help="run a Temporal worker (configured by environment)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run N worker processes (one core each), restarted when one dies",
    )
    p.set_defaults(run=worker)

    p = sub.add_parser("enrol", help="enrol everyone in a selection, with a progress bar")
    p.add_argument("journey", help="the journey's key")
    p.add_argument("--selection", required=True, help="the selection's key")
    p.add_argument("--api-url", default=None, help="default JOURNEYS_API_URL, or journeys dev's")
    p.add_argument("--data-dir", default=".journeys", help="journeys dev's data (its API key)")
    p.set_defaults(run=enrol)

    p = sub.add_parser("recurring", help="list, show, pause (stop) or resume recurring sends")
    p.add_argument("action", choices=["list", "show", "pause", "resume"])
    p.add_argument("key", nargs="?", default=None, help="the recurring send's key")
    p.add_argument("--api-url", default=None, help="default JOURNEYS_API_URL, or journeys dev's")
    p.add_argument("--data-dir", default=".journeys", help="journeys dev's data (its API key)")
    p.set_defaults(run=recurring)

    p = sub.add_parser("keys", help="create, list or revoke API keys (needs an admin key)")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (
        ("create", "make a key; its value is printed once"),
        ("list", "the keys, without their values"),
        ("revoke", "revoke the key in use with this name"),
    ):
        a = actions.add_parser(action, help=text)
        if action != "list":
            a.add_argument("name", help="the key's name")
        if action == "create":
            a.add_argument(
                "--scope",
                action="append",
                default=[],
                help="read, write (includes read) or admin (includes write); repeat for more",
            )
        a.add_argument(
            "--api-url", default=None, help="default JOURNEYS_API_URL, or journeys dev's"
        )
        a.add_argument("--data-dir", default=".journeys", help="journeys dev's data (its API key)")
        a.set_defaults(run=keys)

    p = sub.add_parser(
        "ops", help="failed and stuck participants; replay and reset runs (talks to Temporal)"
    )
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (
        ("failed", "participants whose run failed, with the step and why"),
        ("stuck", "participants one of whose activities keeps retrying"),
        ("replay", "replay the runs' histories on the code on this disk (changes nothing)"),
        ("reset", "reset the runs in bulk; mail sent before the reset point is not resent"),
    ):
        a = actions.add_parser(action, help=text)
        a.add_argument("--journey", default=None, help="only this journey's runs")
        a.add_argument("--step", default=None, help="only runs at (or failed at) this step")
        if action == "failed":
            a.add_argument("--since", default=None, help="closed since, e.g. P1D")
        if action == "stuck":
            a.add_argument("--older-than", default="PT10M", help="retrying for longer than (PT10M)")
        if action in ("replay", "reset"):
            a.add_argument(
                "--query",
                default=None,
                help="a visibility query ANDed to the rest, e.g. 'ExecutionStatus = \"Failed\"'",
            )
        if action == "reset":
            a.add_argument(
                "--to",
                required=True,
                help="last-good (before the failed or retrying activity), first, or step:<id>",
            )
            a.add_argument("--reason", default="journeys ops reset", help="kept on each reset")
            a.add_argument(
                "--dry-run", action="store_true", help="show each run's reset point only"
            )
        a.set_defaults(run=ops_command)
    for action, text in (
        ("versions", "the Worker Deployment's builds and the open runs each serves"),
        ("promote", "make a build the current version: new runs start on it"),
    ):
        a = actions.add_parser(action, help=text)
        if action == "promote":
            a.add_argument("build_id", help="the build id (JOURNEYS_BUILD_ID of its workers)")
        a.add_argument(
            "--deployment", default=None, help="default JOURNEYS_DEPLOYMENT, or journeys"
        )
        a.set_defaults(run=ops_command)

    p = sub.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    p.set_defaults(run=migrate)

    p = sub.add_parser("bench", help="measure the product against raw Temporal and SMTP floors")
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke check (< 2 min)")
    p.add_argument("-n", type=int, default=None, help="operations per figure (500; quick 100)")
    p.add_argument("--concurrency", type=int, default=None, help="client requests in flight (32)")
    p.add_argument(
        "--bulk-n",
        type=int,
        default=None,
        help="contacts of the bulk and recurring pairs (20,000; quick 2,000)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=["enrol", "events", "steps", "mail", "bulk", "recurring"],
        default=None,
        help="run only these pairs (no idle, history or count figures)",
    )
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="the bulk pair measures the product only (for a long run: --bulk-n 100000)",
    )
    p.add_argument("--out", default=None, help="JSON file or folder (default bench/results/)")
    p.add_argument(
        "--faults",
        action="store_true",
        help="instead: kill and restart each part around N participants' mail (N=1000) and "
        "count what was lost or sent twice",
    )
    p.set_defaults(run=bench)

    args = parser.parse_args(argv)
    configure_logging(
        os.environ.get(
            "JOURNEYS_LOG_LEVEL",
            "warning" if args.command in ("dev", "enrol", "recurring", "keys", "ops") else "info",
        )
    )
    try:
        if asyncio.iscoroutinefunction(args.run):
            asyncio.run(args.run(args))
        else:
            args.run(args)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a clear message, not a traceback, for the usual failures
        if os.environ.get("JOURNEYS_DEBUG"):
            raise
        print(f"journeys {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
