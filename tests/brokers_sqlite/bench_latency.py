"""Measure publish → deliver latency of ``sqlite://`` across two processes.

Run: ``PYTHONPATH=. python tests/brokers_sqlite/bench_latency.py [MESSAGES]``. A consumer
process (this script with ``--consume``) waits on one queue; this process publishes one
message at a time, a few milliseconds apart, so every message measures a wake-up (hint →
claim → callback), not a queue behind a burst. The body carries ``time.monotonic()``, which
is one clock for every process of the host. Prints p50/p99/max for ``synchronous=FULL`` and
``NORMAL``, with the backstop poll at its default (1 s) and the publisher's own commit time.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio

from actorbus.brokers import Delivery, OutboundMessage, QueueSpec, Topology
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.messages import Envelope

QUEUE = "latency.queue"
ROOT = Path(__file__).resolve().parents[2]


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": round(pick(0.50) * 1e3, 3),
        "p99_ms": round(pick(0.99) * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


async def consume(url: str, count: int) -> None:
    latencies: list[float] = []
    done = anyio.Event()
    async with SqliteBroker(url) as broker, anyio.create_task_group() as tg:

        def on_delivery(d: Delivery) -> None:
            latencies.append(time.monotonic() - float(d.body))
            tg.start_soon(d.ack)
            if len(latencies) >= count:
                done.set()

        await broker.consume(QUEUE, on_delivery, prefetch=10)
        print("consuming", flush=True)
        await done.wait()
        tg.cancel_scope.cancel()
    print(json.dumps(quantiles(latencies)), flush=True)


async def declare(url: str) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))


async def publish(url: str, count: int) -> list[float]:
    commits: list[float] = []
    async with SqliteBroker(url) as broker:
        for _ in range(count):
            sent = time.monotonic()
            body = repr(sent).encode()
            await broker.publish(OutboundMessage("", Envelope(uuid.uuid4().hex, "t", QUEUE), body))
            commits.append(time.monotonic() - sent)
            await anyio.sleep(0.005)
    return commits


def measure(url: str, count: int) -> dict[str, object]:
    anyio.run(declare, url)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--consume", url, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "consuming":
        pass
    commits = anyio.run(publish, url, count)
    lines = proc.stdout.read()
    proc.wait()
    result = [line for line in lines.splitlines() if line.startswith("{")]
    return {"deliver": json.loads(result[-1]), "publish_commit": quantiles(commits)}


def main() -> None:
    if sys.argv[1:2] == ["--consume"]:
        anyio.run(consume, sys.argv[2], int(sys.argv[3]))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for sync in ("FULL", "NORMAL"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/broker.sqlite3?synchronous={sync}"
            print(sync, json.dumps(measure(url, count)), flush=True)


if __name__ == "__main__":
    main()
