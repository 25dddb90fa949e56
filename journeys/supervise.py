"""`journeys worker --processes N`: N worker processes on one machine, kept running.

One Python process uses one core for workflow tasks and activities alike; N
processes use N. Each is a plain `journeys worker` (its own Temporal client,
pool, SMTP connections and dispatcher: the dispatcher's claims are leased rows, so
several may run against one database). A process that dies is started again after
a pause that grows while it keeps dying; SIGTERM or Ctrl-C stops them all the way
Ctrl-C stops one (running activities finish, up to the worker's graceful timeout).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog

log = structlog.get_logger(__name__)

# A stopped child gets this long to finish its running activities before it is killed
# (the worker's graceful shutdown is 30 s).
STOP_SECONDS = 40.0
RESTART_FIRST, RESTART_MAX = 1.0, 30.0
# A child that ran this long before it died was healthy: its next restart is quick.
HEALTHY_SECONDS = 60.0


async def supervise(processes: int, argv: list[str] | None = None) -> None:
    argv = argv or [sys.executable, "-m", "journeys.cli", "worker"]
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    log.info("worker.supervising", processes=processes)
    await asyncio.gather(*(_keep_running(i, argv, stopping) for i in range(processes)))


async def _keep_running(index: int, argv: list[str], stopping: asyncio.Event) -> None:
    delay = RESTART_FIRST
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, "JOURNEYS_WORKER_PROCESS": str(index)},
            # Out of the terminal's process group: Ctrl-C reaches the children once,
            # through this process, and they stop gracefully.
            start_new_session=True,
        )
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            stop.cancel()
            await _stop(proc, exited)
            return
        stop.cancel()
        if loop.time() - started > HEALTHY_SECONDS:
            delay = RESTART_FIRST
        log.warning("worker.process_exited", process=index, code=proc.returncode, restart_in=delay)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, RESTART_MAX)


async def _stop(proc: asyncio.subprocess.Process, exited: asyncio.Future[int]) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)  # the worker's graceful path (KeyboardInterrupt)
    try:
        await asyncio.wait_for(asyncio.shield(exited), STOP_SECONDS)
    except TimeoutError:
        proc.kill()
        await exited
