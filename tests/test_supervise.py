"""`journeys worker --processes N`: a worker process that dies is started again, and
SIGTERM stops the processes through their graceful path (SIGINT, as Ctrl-C would)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import signal, sys, time
log = open(sys.argv[1], "a")
print("started", flush=True, file=log)
if sys.argv[2] == "die":
    sys.exit(3)
def stop(*_):
    print("stopped gracefully", flush=True, file=log)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
while True:
    time.sleep(0.1)
"""

SUPERVISOR = """
import asyncio, sys
from journeys.supervise import supervise
child = [sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]]
asyncio.run(supervise(int(sys.argv[4]), child))
"""


def _supervise(log: Path, mode: str, processes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, CHILD, str(log), mode, str(processes)]
    )


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_process_that_dies_is_started_again(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = _supervise(log, "die", 1)
    try:
        # Started, died, started again after 1 s, and again after 2 s more.
        _until(lambda: _lines(log).count("started") >= 3)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0


def test_sigterm_stops_every_process_gracefully(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = _supervise(log, "run", 2)
    _until(lambda: _lines(log).count("started") == 2)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0
    assert _lines(log).count("stopped gracefully") == 2
