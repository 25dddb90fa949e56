"""`journeys ops failed | stuck | replay | reset`: operations on participants' runs,
straight against Temporal (TEMPORAL_ADDRESS, or `journeys dev`'s), with the code on
this disk: replay answers whether the runs' histories replay on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from temporalio.client import Client

from journeys import ops
from journeys.cli_enrol import CommandError
from journeys.definition.common import parse_duration
from journeys.settings import TemporalSettings

# In `journeys dev`'s data folder (beside its api-key): the address of its Temporal
# server, written when it starts.
DEV_TEMPORAL_ADDRESS = "temporal-address"


def temporal_settings(data_dir: str) -> tuple[TemporalSettings, str]:
    """The settings to reach Temporal with, and where the address came from:
    TEMPORAL_ADDRESS, else the server `journeys dev` started with `data_dir`, else the
    default (localhost:7233)."""
    if os.environ.get("TEMPORAL_ADDRESS"):
        return TemporalSettings(), "TEMPORAL_ADDRESS"
    stored = Path(data_dir) / DEV_TEMPORAL_ADDRESS
    try:
        address = stored.read_text().strip()
    except FileNotFoundError:
        return TemporalSettings(), f"the default: no TEMPORAL_ADDRESS, and no {stored}"
    return TemporalSettings(temporal_address=address), f"journeys dev's, from {stored}"


async def connect_temporal(data_dir: str) -> Client:
    """A client of the Temporal server `temporal_settings` names; a CommandError saying
    which address was tried, and why, when it cannot be reached."""
    from journeys.temporal import connect

    settings, source = temporal_settings(data_dir)
    try:
        return await connect(settings)
    except RuntimeError as exc:  # the SDK's "Failed client connect: ..."
        raise CommandError(
            f"cannot reach Temporal at {settings.temporal_address} ({source}): {exc}"
        ) from None


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else "-"


def _duration(option: str, text: str) -> timedelta:
    try:
        return parse_duration(text, zero=True)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


@contextmanager
def _progress(console: Console, what: str) -> Iterator[Callable[[int, int | None], None]]:
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


async def show_failed(
    client: Client,
    console: Console,
    *,
    journey: str | None,
    step: str | None,
    since: str | None,
) -> list[ops.FailedRun]:
    after = datetime.now(UTC) - _duration("--since", since) if since else None
    runs = await ops.failed_runs(client, journey=journey, step=step, since=after)
    table = Table(title=f"Failed runs ({len(runs)})")
    for column in ("journey", "participant", "step", "failed at (UTC)"):
        table.add_column(column, no_wrap=True)
    for run in runs:
        table.add_row(
            run.journey or "-", run.participant or "-", run.step or "-", _when(run.closed_at)
        )
    console.print(table)
    for run in runs:  # below the table: a reason is too long for a column
        console.print(f"  {run.workflow_id}: {run.reason}")
    return runs


async def show_stuck(
    client: Client,
    console: Console,
    *,
    journey: str | None,
    step: str | None,
    older_than: str,
) -> list[ops.StuckRun]:
    with _progress(console, "looking at running participants") as progress:
        runs = await ops.stuck_runs(
            client,
            now=datetime.now(UTC),
            older_than=_duration("--older-than", older_than),
            journey=journey,
            step=step,
            progress=progress,
        )
    table = Table(
        title=f"Stuck runs: not moved for over {older_than} (an activity retrying or running, "
        f"a workflow task failing) ({len(runs)})"
    )
    columns = ("journey", "participant", "step", "problem", "activity", "attempt", "since (UTC)")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for run in runs:
        table.add_row(
            run.journey or "-",
            run.participant or "-",
            run.step or "-",
            run.problem,
            run.activity or "-",
            str(run.attempt),
            _when(run.since),
        )
    console.print(table)
    for run in runs:  # below the table: an error is too long for a column
        said = run.last_error or (
            "started, not done" if run.problem == "running" else "(no error recorded)"
        )
        if run.last_heartbeat is not None:
            said += f"; last heartbeat {run.last_heartbeat.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        if run.reported_problems:
            said += f"; Temporal reports {', '.join(run.reported_problems)}"
        console.print(f"  {run.workflow_id}: {said}")
    return runs


async def replay(client: Client, console: Console, query: str) -> list[ops.ReplayOutcome]:
    from worker import WORKFLOWS

    with _progress(console, "replaying") as progress:
        outcomes = await ops.replay_runs(client, query, WORKFLOWS, progress=progress)
    bad = [o for o in outcomes if not o.ok]
    for outcome in bad:
        console.print(f"[red]does not replay[/] {outcome.workflow_id} ({outcome.run_id})")
        console.print(f"  {outcome.error}")
    console.print(
        f"{len(outcomes)} runs replayed on this code: {len(outcomes) - len(bad)} cleanly, "
        f"{len(bad)} not"
    )
    return outcomes


async def reset(
    client: Client,
    console: Console,
    query: str,
    to: str,
    *,
    reason: str,
    dry_run: bool,
) -> list[ops.ResetOutcome]:
    try:
        ops.check_reset_target(to)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with _progress(console, "resetting" if not dry_run else "finding reset points") as progress:
        outcomes = await ops.reset_runs(
            client, query, to, reason=reason, dry_run=dry_run, progress=progress
        )
    for outcome in outcomes:
        if outcome.outcome != "reset":
            console.print(f"{outcome.outcome} {outcome.workflow_id}: {outcome.detail}")
    counts = {
        kind: sum(o.outcome == kind for o in outcomes) for kind in ("reset", "skipped", "error")
    }
    console.print(
        f"reset {counts['reset']}, skipped {counts['skipped']}, errors {counts['error']}"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
    return outcomes


async def show_versions(client: Client, console: Console, deployment: str) -> list[ops.VersionRuns]:
    versions = await ops.deployment_versions(client, deployment)
    table = Table(title=f"Worker Deployment {deployment}: which build serves which runs")
    for column in ("build id", "status", "open runs", "of which journeys"):
        table.add_column(column, no_wrap=True)
    for v in versions:
        table.add_row(
            v.build_id or "(unversioned)", v.status, str(v.open_runs), str(v.open_journey_runs)
        )
    console.print(table)
    return versions


async def promote(client: Client, console: Console, deployment: str, build_id: str) -> None:
    previous = await ops.promote(client, deployment, build_id)
    console.print(
        f"{deployment}: {build_id} is current (was {previous or 'none'}); new runs start on "
        "it, pinned runs stay on their build until they end"
    )
