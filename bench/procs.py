"""Helper processes of the benchmark, each started as `python -m bench.procs ...`:

- `floor-worker`: the bare Temporal worker for `bench.floor`, on its own task queue;
- `sink`: the SMTP sink (`journeys.mailsink.MailSink`), so that neither the bench
  client nor the product's worker shares a GIL with the receiving side.

Each prints `READY <detail>` on stdout once it serves, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def floor_worker(address: str, namespace: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from bench.floor import ACTIVITIES, WORKFLOWS
    from worker import WORKER_OPTIONS

    client = await Client.connect(address, namespace=namespace)
    # The same worker options as the product's worker (worker.py), default converter.
    worker = Worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES, **WORKER_OPTIONS
    )
    async with worker:
        print(f"READY {task_queue}", flush=True)
        await _until_terminated()


async def sink(folder: Path, port: int) -> None:
    from journeys.mailsink import MailSink

    async with MailSink(folder, port=port) as server:
        print(f"READY {server.port}", flush=True)
        await _until_terminated()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.procs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("floor-worker")
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", required=True)
    p = sub.add_parser("sink")
    p.add_argument("--folder", required=True, type=Path)
    p.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "floor-worker":
        asyncio.run(floor_worker(args.address, args.namespace, args.task_queue))
    else:
        asyncio.run(sink(args.folder, args.port))


if __name__ == "__main__":
    main()
