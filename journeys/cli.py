"""`journeys` command line: dev, api, worker, enrol, recurring, keys, ops, migrate, bench."""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import secrets
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog
import typer
from pydantic import ValidationError

from journeys.logging import configure_logging
from journeys.settings import ApiSettings, DatabaseSettings, Settings, missing_variables

if TYPE_CHECKING:
    from rich.console import Console
    from temporalio.client import Client

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


async def dev(
    *, data_dir: str, host: str, port: int, temporal_port: int, ui_port: int, smtp_port: int
) -> None:
    """PostgreSQL, Temporal + web UI, SMTP sink, worker and API in one process tree."""
    from journeys.cli_ops import DEV_TEMPORAL_ADDRESS
    from journeys.devstack import TemporalDevServer, start_postgres
    from journeys.mailsink import MailSink
    from journeys.migrate import migrate
    from journeys.smssink import sink_url
    from worker import running_worker

    home = Path(data_dir).resolve()
    home.mkdir(parents=True, exist_ok=True)
    print(f"Journeys dev stack, data in {home}", flush=True)
    postgres = start_postgres(home / "postgres")
    temporal = TemporalDevServer(
        home / "temporal.db",
        port=temporal_port,
        ui_port=ui_port,
        log_file=home / "temporal.log",
    )
    # A relay named by SMTP_URL gets the mail; without one, the local sink keeps it.
    relay = os.environ.get("SMTP_URL")
    # Likewise an SMS provider named by SMS_URL, else the API's own dev sink.
    sms_provider = os.environ.get("SMS_URL")
    settings = ApiSettings(
        database_url=os.environ.get("DATABASE_URL") or postgres.get_uri(),
        temporal_address=temporal.address,
        smtp_url=relay or f"smtp://127.0.0.1:{smtp_port}",
        api_key=os.environ.get("JOURNEYS_API_KEY") or _stored_secret(home / "api-key"),
        secret=os.environ.get("JOURNEYS_SECRET") or _stored_secret(home / "secret"),
        webhook_secret=os.environ.get("JOURNEYS_WEBHOOK_SECRET")
        or _stored_secret(home / "webhook-secret"),
        public_url=os.environ.get("JOURNEYS_PUBLIC_URL") or f"http://localhost:{port}",
        dev_mail_dir=None if relay else home / "mail",
        sms_url=sms_provider or sink_url(f"http://127.0.0.1:{port}"),
        dev_sms_dir=None if sms_provider else home / "sms",
        temporal_ui_url=f"http://localhost:{ui_port}",
    )
    await asyncio.to_thread(migrate, settings.database_url)
    async with AsyncExitStack() as stack:
        stack.callback(postgres.cleanup)
        await temporal.start()
        stack.callback(temporal.stop)
        # Where `journeys ops` finds this server when TEMPORAL_ADDRESS is not set.
        (home / DEV_TEMPORAL_ADDRESS).write_text(temporal.address + "\n")
        if relay:
            mail = f"Mail         sent to {_without_password(relay)} (SMTP_URL)"
        else:
            await stack.enter_async_context(MailSink(home / "mail", port=smtp_port))
            mail = (
                f"Mail sink    smtp://127.0.0.1:{smtp_port}, "
                f"read at http://localhost:{port}/dev/mail"
            )
        sms = (
            f"SMS          sent through {_without_password(sms_provider)} (SMS_URL)"
            if sms_provider
            else f"SMS sink     read at http://localhost:{port}/dev/sms"
        )
        await stack.enter_async_context(running_worker(settings))
        print(
            "\n".join(
                [
                    "",
                    f"  API          http://localhost:{port}  (docs: /docs)",
                    f"  API key      {settings.api_key.get_secret_value()}",
                    f"  Console      http://localhost:{port}/console  (sign in with the API key)",
                    f"  Webhooks     signed with {home / 'webhook-secret'}"
                    if not os.environ.get("JOURNEYS_WEBHOOK_SECRET")
                    else "  Webhooks     signed with JOURNEYS_WEBHOOK_SECRET",
                    f"  Temporal UI  http://localhost:{ui_port}",
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
        await _serve_api(settings, host, port)
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


async def api(*, host: str, port: int) -> None:
    settings = await _migrated_settings(ApiSettings)
    _warn_plain_http(settings)
    await _serve_api(settings, host, port)


async def worker(*, processes: int) -> None:
    if processes < 1:
        raise ValueError(f"--processes {processes}: one or more")
    if processes > 1:
        from journeys.supervise import supervise

        await _migrated_settings(Settings)  # once, before the processes start
        await supervise(processes)
        return
    from worker import run_worker

    await run_worker(await _migrated_settings(Settings))


def migrate() -> None:
    from journeys.migrate import migrate as apply

    applied = apply(DatabaseSettings().database_url)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


async def bench(
    *,
    quick: bool,
    n: int | None,
    concurrency: int | None,
    bulk_n: int | None,
    only: list[str] | None,
    no_floor: bool,
    out: str | None,
    faults: bool,
) -> None:
    if faults:
        from bench.faults import N_BENCH, run_faults

        ok = await run_faults(n=n or N_BENCH, out=out)
    else:
        from bench.run import run_bench

        ok = await run_bench(
            quick=quick,
            n=n,
            concurrency=concurrency,
            out=out,
            bulk_n=bulk_n,
            only=only,
            floors=not no_floor,
        )
    if not ok:
        sys.exit(2)


async def enrol(*, journey: str, selection: str, api_url: str | None, data_dir: str) -> None:
    from journeys.cli_enrol import api_client, enrol_selection

    async with api_client(api_url, data_dir) as http:
        await enrol_selection(http, journey, selection)


async def recurring(*, action: str, key: str | None, api_url: str | None, data_dir: str) -> None:
    from rich.console import Console

    from journeys.cli_enrol import api_client
    from journeys.cli_recurring import list_sends, set_status, show_send

    console = Console()
    async with api_client(api_url, data_dir) as http:
        if action == "list":
            await list_sends(http, console)
            return
        if key is None:
            raise ValueError(f"journeys recurring {action} needs the send's key")
        if action == "show":
            await show_send(http, key, console)
        else:
            await set_status(http, key, "stopped" if action == "pause" else "live", console)


async def keys(
    *, action: str, name: str | None, scope: list[str], api_url: str | None, data_dir: str
) -> None:
    from rich.console import Console

    from journeys.cli_enrol import api_client
    from journeys.cli_keys import create_key, list_keys, revoke_key

    console = Console()
    async with api_client(api_url, data_dir) as http:
        if action == "list":
            await list_keys(http, console)
            return
        if name is None:
            raise ValueError(f"journeys keys {action} needs the key's name")
        if action == "create":
            await create_key(http, name, scope, console)
        else:
            await revoke_key(http, name, console)


async def bounces_serve(*, listen: str | None) -> None:
    from journeys.bounces import serve
    from journeys.settings import BounceSettings

    settings = await _migrated_settings(BounceSettings)
    if listen is not None:
        settings = settings.model_copy(update={"bounce_listen": listen})
    await serve(settings)


async def bounces_kept(*, show: int | None, limit: int, api_url: str | None, data_dir: str) -> None:
    from rich.console import Console

    from journeys.cli_bounces import list_kept, show_kept
    from journeys.cli_enrol import api_client

    async with api_client(api_url, data_dir) as http:
        if show is not None:
            await show_kept(http, show)
        else:
            await list_kept(http, Console(), limit)


async def _temporal(data_dir: str) -> tuple[Client, Console]:
    from rich.console import Console

    from journeys.cli_ops import connect_temporal

    return await connect_temporal(data_dir), Console()


async def ops_failed(
    *, journey: str | None, step: str | None, since: str | None, data_dir: str
) -> None:
    from journeys import cli_ops

    client, console = await _temporal(data_dir)
    await cli_ops.show_failed(client, console, journey=journey, step=step, since=since)


async def ops_stuck(
    *, journey: str | None, step: str | None, older_than: str, data_dir: str
) -> None:
    from journeys import cli_ops

    client, console = await _temporal(data_dir)
    await cli_ops.show_stuck(client, console, journey=journey, step=step, older_than=older_than)


async def ops_replay(
    *, journey: str | None, step: str | None, query: str | None, data_dir: str
) -> None:
    from journeys import cli_ops
    from journeys.ops import runs_query

    client, console = await _temporal(data_dir)
    where = runs_query(journey=journey, step=step, where=query)
    outcomes = await cli_ops.replay(client, console, where)
    if not all(o.ok for o in outcomes):
        sys.exit(3)  # for a deploy pipeline: some runs would break on this code


async def ops_reset(
    *,
    journey: str | None,
    step: str | None,
    query: str | None,
    to: str,
    reason: str,
    dry_run: bool,
    data_dir: str,
) -> None:
    from journeys import cli_ops
    from journeys.ops import runs_query

    client, console = await _temporal(data_dir)
    where = runs_query(journey=journey, step=step, where=query)
    outcomes = await cli_ops.reset(client, console, where, to, reason=reason, dry_run=dry_run)
    if any(o.outcome == "error" for o in outcomes):
        sys.exit(3)


def _deployment(name: str | None) -> str:
    return name or os.environ.get("JOURNEYS_DEPLOYMENT") or "journeys"


async def ops_versions(*, deployment: str | None, data_dir: str) -> None:
    from journeys import cli_ops

    client, console = await _temporal(data_dir)
    await cli_ops.show_versions(client, console, _deployment(deployment))


async def ops_promote(*, build_id: str, deployment: str | None, data_dir: str) -> None:
    from journeys import cli_ops

    client, console = await _temporal(data_dir)
    await cli_ops.promote(client, console, _deployment(deployment), build_id)


# --- the command line ------------------------------------------------------------------
#
# Each command below only declares its arguments and hands them to `_run` with the body
# above; the bodies import what they need when they run, so `journeys --help` is quick.

QUIET_COMMANDS = ("dev", "enrol", "recurring", "keys", "ops", "bounces kept")


def _run(command: str, body: Callable[..., Any], **params: Any) -> None:
    """Run `journeys <command>`'s body with its arguments: logging set up, coroutines
    under asyncio.run, and the usual failures a one-line message and exit 1."""
    configure_logging(
        os.environ.get("JOURNEYS_LOG_LEVEL", "warning" if command in QUIET_COMMANDS else "info")
    )
    try:
        if inspect.iscoroutinefunction(body):
            asyncio.run(body(**params))
        else:
            body(**params)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a clear message, not a traceback, for the usual failures
        if os.environ.get("JOURNEYS_DEBUG"):
            raise
        print(f"journeys {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        # Not sys.exit: after a failed connect, a thread of the Temporal client's core
        # may still call into Python while the interpreter finalizes, which aborts the
        # process (SIGABRT, "PyGILState_Release … finalizing": 1 in 24 runs here) and
        # loses the exit status. Nothing is left to clean up on this path.
        # The exit handlers still run first (an embedded PostgreSQL stops in one).
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _typer(help: str) -> typer.Typer:
    return typer.Typer(
        help=help,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,  # JOURNEYS_DEBUG shows a plain traceback
        context_settings={"help_option_names": ["-h", "--help"]},
    )


app = _typer(__doc__ or "")
recurring_app = _typer("list, show, pause (stop) or resume recurring sends")
keys_app = _typer("create, list or revoke API keys (needs an admin key)")
ops_app = _typer("failed and stuck participants; replay and reset runs (talks to Temporal)")
app.add_typer(recurring_app, name="recurring")
app.add_typer(keys_app, name="keys")
app.add_typer(ops_app, name="ops")
bounces_app = _typer("take bounce notices (an SMTP/LMTP listener, an IMAP mailbox); list kept ones")
app.add_typer(bounces_app, name="bounces")

ApiUrl = Annotated[str | None, typer.Option(help="default JOURNEYS_API_URL, or journeys dev's")]
DataDir = Annotated[str, typer.Option(help="journeys dev's data (its API key)")]
Journey = Annotated[str | None, typer.Option(help="only this journey's runs")]
Step = Annotated[str | None, typer.Option(help="only runs at (or failed at) this step")]
Query = Annotated[
    str | None,
    typer.Option(help="a visibility query ANDed to the rest, e.g. 'ExecutionStatus = \"Failed\"'"),
]
Deployment = Annotated[str | None, typer.Option(help="default JOURNEYS_DEPLOYMENT, or journeys")]
OpsDataDir = Annotated[
    str,
    typer.Option(help="journeys dev's data: its Temporal address, without TEMPORAL_ADDRESS"),
]
SendKey = Annotated[str, typer.Argument(metavar="KEY", help="the recurring send's key")]
KeyName = Annotated[str, typer.Argument(metavar="NAME", help="the key's name")]


@app.command("dev", help="run the whole embedded stack (no Docker needed)")
def dev_command(
    data_dir: Annotated[
        str, typer.Option(help="where data is kept (default .journeys)", show_default=False)
    ] = ".journeys",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    temporal_port: Annotated[int, typer.Option()] = 7233,
    ui_port: Annotated[int, typer.Option()] = 8233,
    smtp_port: Annotated[int, typer.Option()] = 1025,
) -> None:
    _run(
        "dev",
        dev,
        data_dir=data_dir,
        host=host,
        port=port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        smtp_port=smtp_port,
    )


@app.command("api", help="serve the HTTP API (configured by environment)")
def api_command(
    host: Annotated[str, typer.Option()] = "0.0.0.0",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    _run("api", api, host=host, port=port)


@app.command("worker", help="run a Temporal worker (configured by environment)")
def worker_command(
    processes: Annotated[
        int,
        typer.Option(help="run N worker processes (one core each), restarted when one dies"),
    ] = 1,
) -> None:
    _run("worker", worker, processes=processes)


@app.command("enrol", help="enrol everyone in a selection, with a progress bar")
def enrol_command(
    journey: Annotated[str, typer.Argument(metavar="JOURNEY", help="the journey's key")],
    selection: Annotated[str, typer.Option(help="the selection's key")],
    api_url: ApiUrl = None,
    data_dir: DataDir = ".journeys",
) -> None:
    _run("enrol", enrol, journey=journey, selection=selection, api_url=api_url, data_dir=data_dir)


@recurring_app.command("list", help="the recurring sends, as a table")
def recurring_list(api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("recurring", recurring, action="list", key=None, api_url=api_url, data_dir=data_dir)


@recurring_app.command("show", help="a send's schedule, its next runs and its last runs")
def recurring_show(key: SendKey, api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("recurring", recurring, action="show", key=key, api_url=api_url, data_dir=data_dir)


@recurring_app.command("pause", help="stop a send: status stopped, settings kept, schedule paused")
def recurring_pause(key: SendKey, api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("recurring", recurring, action="pause", key=key, api_url=api_url, data_dir=data_dir)


@recurring_app.command("resume", help="set a stopped send's status live again")
def recurring_resume(key: SendKey, api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("recurring", recurring, action="resume", key=key, api_url=api_url, data_dir=data_dir)


@keys_app.command("create", help="make a key; its value is printed once")
def keys_create(
    name: KeyName,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="read, write (includes read) or admin (includes write); repeat for more"),
    ] = None,
    api_url: ApiUrl = None,
    data_dir: DataDir = ".journeys",
) -> None:
    _run(
        "keys",
        keys,
        action="create",
        name=name,
        scope=list(scope or []),
        api_url=api_url,
        data_dir=data_dir,
    )


@keys_app.command("list", help="the keys, without their values")
def keys_list(api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("keys", keys, action="list", name=None, scope=[], api_url=api_url, data_dir=data_dir)


@keys_app.command("revoke", help="revoke the key in use with this name")
def keys_revoke(name: KeyName, api_url: ApiUrl = None, data_dir: DataDir = ".journeys") -> None:
    _run("keys", keys, action="revoke", name=name, scope=[], api_url=api_url, data_dir=data_dir)


@bounces_app.command(
    "serve",
    help="take DSNs and complaints sent to the bounce domain: the SMTP/LMTP listener"
    " (JOURNEYS_BOUNCE_LISTEN) and the IMAP poller (JOURNEYS_BOUNCE_IMAP_URL)",
)
def bounces_serve_command(
    listen: Annotated[
        str | None,
        typer.Option(
            help="host:port of the listener (default JOURNEYS_BOUNCE_LISTEN, or"
            " 127.0.0.1:2525); '' for none"
        ),
    ] = None,
) -> None:
    _run("bounces", bounces_serve, listen=listen)


@bounces_app.command("kept", help="notices that recorded nothing (forged, unparseable), and why")
def bounces_kept_command(
    show: Annotated[int | None, typer.Option(help="print this kept notice's raw mail")] = None,
    limit: Annotated[int, typer.Option(help="the newest N")] = 100,
    api_url: ApiUrl = None,
    data_dir: DataDir = ".journeys",
) -> None:
    _run("bounces kept", bounces_kept, show=show, limit=limit, api_url=api_url, data_dir=data_dir)


@ops_app.command("failed", help="participants whose run failed, with the step and why")
def ops_failed_command(
    journey: Journey = None,
    step: Step = None,
    since: Annotated[str | None, typer.Option(help="closed since, e.g. P1D")] = None,
    data_dir: OpsDataDir = ".journeys",
) -> None:
    _run("ops", ops_failed, journey=journey, step=step, since=since, data_dir=data_dir)


@ops_app.command(
    "stuck",
    help="participants that have not moved: an activity retrying or running without end, "
    "a workflow task failing again and again",
)
def ops_stuck_command(
    journey: Journey = None,
    step: Step = None,
    older_than: Annotated[str, typer.Option(help="not moved for longer than (PT10M)")] = "PT10M",
    data_dir: OpsDataDir = ".journeys",
) -> None:
    _run("ops", ops_stuck, journey=journey, step=step, older_than=older_than, data_dir=data_dir)


@ops_app.command(
    "replay", help="replay the runs' histories on the code on this disk (changes nothing)"
)
def ops_replay_command(
    journey: Journey = None,
    step: Step = None,
    query: Query = None,
    data_dir: OpsDataDir = ".journeys",
) -> None:
    _run("ops", ops_replay, journey=journey, step=step, query=query, data_dir=data_dir)


@ops_app.command(
    "reset", help="reset the runs in bulk; mail sent before the reset point is not resent"
)
def ops_reset_command(
    to: Annotated[
        str,
        typer.Option(
            help="last-good (before the failed or retrying activity), first, or step:<id>"
        ),
    ],
    journey: Journey = None,
    step: Step = None,
    query: Query = None,
    reason: Annotated[str, typer.Option(help="kept on each reset")] = "journeys ops reset",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show each run's reset point only")
    ] = False,
    data_dir: OpsDataDir = ".journeys",
) -> None:
    _run(
        "ops",
        ops_reset,
        journey=journey,
        step=step,
        query=query,
        to=to,
        reason=reason,
        dry_run=dry_run,
        data_dir=data_dir,
    )


@ops_app.command("versions", help="the Worker Deployment's builds and the open runs each serves")
def ops_versions_command(deployment: Deployment = None, data_dir: OpsDataDir = ".journeys") -> None:
    _run("ops", ops_versions, deployment=deployment, data_dir=data_dir)


@ops_app.command("promote", help="make a build the current version: new runs start on it")
def ops_promote_command(
    build_id: Annotated[
        str,
        typer.Argument(metavar="BUILD_ID", help="the build id (JOURNEYS_BUILD_ID of its workers)"),
    ],
    deployment: Deployment = None,
    data_dir: OpsDataDir = ".journeys",
) -> None:
    _run("ops", ops_promote, build_id=build_id, deployment=deployment, data_dir=data_dir)


@app.command("migrate", help="apply database migrations to DATABASE_URL")
def migrate_command() -> None:
    _run("migrate", migrate)


class BenchPair(StrEnum):
    enrol = "enrol"
    events = "events"
    steps = "steps"
    mail = "mail"
    bulk = "bulk"
    recurring = "recurring"
    console = "console"  # not a pair: the console's pages, timed


@app.command("bench", help="measure the product against raw Temporal and SMTP floors")
def bench_command(
    quick: Annotated[
        bool, typer.Option("--quick", help="small sizes, a smoke check (< 2 min)")
    ] = False,
    n: Annotated[
        int | None, typer.Option("-n", help="operations per figure (500; quick 100)")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="client requests in flight (32)")] = None,
    bulk_n: Annotated[
        int | None,
        typer.Option(help="contacts of the bulk and recurring pairs (20,000; quick 2,000)"),
    ] = None,
    only: Annotated[
        list[BenchPair] | None,
        typer.Option(help="run only these pairs (no idle, history or count figures)"),
    ] = None,
    no_floor: Annotated[
        bool,
        typer.Option(
            "--no-floor",
            help="the bulk pair measures the product only (for a long run: --bulk-n 100000)",
        ),
    ] = False,
    out: Annotated[
        str | None, typer.Option(help="JSON file or folder (default bench/results/)")
    ] = None,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="instead: kill and restart each part around N participants' mail (N=1000) "
            "and count what was lost or sent twice",
        ),
    ] = False,
) -> None:
    _run(
        "bench",
        bench,
        quick=quick,
        n=n,
        concurrency=concurrency,
        bulk_n=bulk_n,
        only=[pair.value for pair in only] if only else None,
        no_floor=no_floor,
        out=out,
        faults=faults,
    )


def _several_after_only(args: list[str]) -> list[str]:
    """`bench --only enrol events` (several values after one --only) as typer reads a
    repeatable option: `--only enrol --only events`."""
    if not args or args[0] != "bench":
        return args
    spread: list[str] = []
    after_only = False
    for arg in args:
        if after_only and not arg.startswith("-"):
            if spread[-1] != "--only":
                spread.append("--only")
        else:
            after_only = arg == "--only"
        spread.append(arg)
    return spread


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Usage errors: typer's message and exit 2; a command's own failures: see _run.
        app(args=_several_after_only(args), prog_name="journeys")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise


if __name__ == "__main__":
    main()
