"""Measure publish → consume → ack throughput and latency: ``sqlite://`` against ``memory://``.

Run: ``PYTHONPATH=. python tests/brokers_sqlite/bench_throughput.py [MESSAGES]``. One process,
one queue; ``PUBLISHERS`` tasks publish concurrently (one ``publish`` awaited at a time each,
as request handlers do: the sqlite broker group-commits them) while a consumer with prefetch
100 acks every delivery through a pool of ack tasks. Prints messages per second (first
publish to last ack) and the publish → deliver latency p50/p99 per broker.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid

import anyio
from anyio.abc import ObjectReceiveStream

from actorbus.brokers import Broker, Delivery, OutboundMessage, QueueSpec, Topology, connect
from actorbus.messages import Envelope

QUEUE = "bench.queue"
PUBLISHERS = 32
ACKERS = 16


async def run(url: str, count: int) -> dict[str, float]:
    latencies: list[float] = []
    done = anyio.Event()
    send, receive = anyio.create_memory_object_stream[Delivery](10_000)

    def on_delivery(d: Delivery) -> None:
        latencies.append(time.perf_counter() - float(d.body))
        send.send_nowait(d)

    async def acker(stream: ObjectReceiveStream[Delivery]) -> None:
        async for d in stream:
            await d.ack()
            if len(latencies) >= count and stream.statistics().current_buffer_used == 0:
                done.set()

    async def publisher(broker: Broker, n: int) -> None:
        for _ in range(n):
            env = Envelope(uuid.uuid4().hex, "bench", QUEUE)
            body = repr(time.perf_counter()).encode()
            await broker.publish(OutboundMessage("", env, body))

    async with connect(url) as broker, anyio.create_task_group() as tg:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        for _ in range(ACKERS):
            tg.start_soon(acker, receive.clone())
        await broker.consume(QUEUE, on_delivery, prefetch=100)
        start = time.perf_counter()
        async with anyio.create_task_group() as pubs:
            for _ in range(PUBLISHERS):
                pubs.start_soon(publisher, broker, count // PUBLISHERS)
        await done.wait()
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    ordered = sorted(latencies)
    return {
        "msgs_per_s": round(len(ordered) / elapsed),
        "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1e3, 2),
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    count -= count % PUBLISHERS
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (
            ("memory://", "memory://"),
            ("sqlite:// FULL", f"sqlite:///{tmp}/full.sqlite3"),
            ("sqlite:// NORMAL", f"sqlite:///{tmp}/normal.sqlite3?synchronous=NORMAL"),
        ):
            print(f"{name:18} {json.dumps(anyio.run(run, url, count))}", flush=True)


if __name__ == "__main__":
    main()
