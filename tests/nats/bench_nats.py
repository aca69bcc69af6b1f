"""actorbus on NATS JetStream against raw nats-py doing the same, in the same run.

``python -m tests.nats.bench_nats [--quick] [--url nats://…]``: starts a throwaway
nats-server -js on a free loopback port unless ``--url`` is given, and prints messages per
second and the ratio actorbus / raw for three cases (targets: consume >= 1.0x, publish and
e2e >= 0.9x):

- ``nats.publish``: publish N messages one after the other, each awaited for its JetStream ack.
- ``nats.consume``: N messages already in the stream; consume and ack them all, prefetch 256.
- ``nats.e2e``: publish N (awaited) while a consumer on the same connection acks them.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import nats

from actorbus.brokers import Binding, Delivery, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.nats import NatsBroker
from actorbus.testing import NatsServer
from actorbus.testing._conformance import make_message

BODY = json.dumps({"orderId": "o-1", "sku": "ABC", "qty": 1, "schemaVersion": 1}).encode()


def _topology(name: str) -> Topology:
    return Topology(
        exchanges=(ExchangeSpec(f"{name}.topic"),),
        queues=(QueueSpec(f"{name}.queue"),),
        bindings=(Binding(f"{name}.topic", f"{name}.queue", "order.created"),),
    )


# ------------------------------------------------------------------ actorbus


async def ab_publish(url: str, n: int) -> float:
    name = f"abp{uuid.uuid4().hex[:6]}"
    async with NatsBroker(url) as broker:
        await broker.declare(_topology(name))
        messages = [make_message(f"{name}.topic", "order.created", BODY) for _ in range(n)]
        start = time.perf_counter()
        for m in messages:
            await broker.publish(m)
        return time.perf_counter() - start


async def _ab_consume(broker: NatsBroker, queue: str, n: int) -> Callable[[], Awaitable[None]]:
    done = anyio.Event()
    count = 0

    async def settle(delivery: Delivery) -> None:
        nonlocal count
        await delivery.ack()
        count += 1
        if count == n:
            done.set()

    send, receive = anyio.create_memory_object_stream[Delivery](10_000)

    async def worker() -> None:  # the consumer actor's loop: one delivery at a time
        async for delivery in receive:
            await settle(delivery)

    broker._tg.start_soon(worker)  # type: ignore[union-attr]
    await broker.consume(queue, send.send_nowait, prefetch=256)
    return done.wait


async def ab_consume(url: str, n: int) -> float:
    name = f"abc{uuid.uuid4().hex[:6]}"
    async with NatsBroker(url) as broker:
        await broker.declare(_topology(name))
        await broker.publish_batch(
            [make_message(f"{name}.topic", "order.created", BODY) for _ in range(n)]
        )
        start = time.perf_counter()
        wait = await _ab_consume(broker, f"{name}.queue", n)
        await wait()
        return time.perf_counter() - start


async def ab_e2e(url: str, n: int) -> float:
    name = f"abe{uuid.uuid4().hex[:6]}"
    async with NatsBroker(url) as broker:
        await broker.declare(_topology(name))
        messages = [make_message(f"{name}.topic", "order.created", BODY) for _ in range(n)]
        start = time.perf_counter()
        wait = await _ab_consume(broker, f"{name}.queue", n)
        for m in messages:
            await broker.publish(m)
        await wait()
        return time.perf_counter() - start


# ------------------------------------------------------------------ raw nats-py


async def _raw_setup(url: str, name: str) -> tuple[nats.NATS, object]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"], retention="interest")
    await js.add_consumer(
        name, durable_name="c", filter_subject=f"{name}.order.created",
        ack_policy="explicit", max_ack_pending=10_000,
    )  # fmt: skip
    return nc, js


async def raw_publish(url: str, n: int) -> float:
    name = f"rawp{uuid.uuid4().hex[:6]}"
    nc, js = await _raw_setup(url, name)
    start = time.perf_counter()
    for _ in range(n):
        await js.publish(  # type: ignore[attr-defined]
            f"{name}.order.created", BODY, headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    elapsed = time.perf_counter() - start
    await nc.close()
    return elapsed


async def _raw_consume(js: object, name: str, n: int) -> None:
    psub = await js.pull_subscribe_bind(durable="c", stream=name)  # type: ignore[attr-defined]
    got = 0
    while got < n:
        try:
            msgs = await psub.fetch(256, timeout=1)
        except TimeoutError:
            continue
        for msg in msgs:
            await msg.ack()
            got += 1


async def raw_consume(url: str, n: int) -> float:
    name = f"rawc{uuid.uuid4().hex[:6]}"
    nc, js = await _raw_setup(url, name)
    futures = [
        await js.publish_async(f"{name}.order.created", BODY)  # type: ignore[attr-defined]
        for _ in range(n)
    ]
    for f in futures:
        await f
    start = time.perf_counter()
    await _raw_consume(js, name, n)
    elapsed = time.perf_counter() - start
    await nc.close()
    return elapsed


async def raw_e2e(url: str, n: int) -> float:
    name = f"rawe{uuid.uuid4().hex[:6]}"
    nc, js = await _raw_setup(url, name)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_raw_consume, js, name, n)
        for _ in range(n):
            await js.publish(  # type: ignore[attr-defined]
                f"{name}.order.created", BODY, headers={"Nats-Msg-Id": uuid.uuid4().hex}
            )
    elapsed = time.perf_counter() - start
    await nc.close()
    return elapsed


CASES = {
    "nats.publish": (ab_publish, raw_publish),
    "nats.consume": (ab_consume, raw_consume),
    "nats.e2e": (ab_e2e, raw_e2e),
}


async def run(url: str, n: int, rounds: int) -> dict[str, float]:
    """Run every case ``rounds`` times alternately; print and return the best ratios."""
    ratios = {}
    for case, (ours, raw) in CASES.items():
        best_ours = best_raw = float("inf")
        for _ in range(rounds):
            best_raw = min(best_raw, await raw(url, n))
            best_ours = min(best_ours, await ours(url, n))
        ratio = best_raw / best_ours  # >1: actorbus is faster
        ratios[case] = ratio
        print(
            f"{case:14s} actorbus {n / best_ours:9.0f} msg/s   nats-py {n / best_raw:9.0f} msg/s"
            f"   ratio {ratio:.2f}x"
        )
    return ratios


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    parser.add_argument("--url", help="an existing nats-server -js (default: a throwaway one)")
    args = parser.parse_args()
    n, rounds = (1000, 2) if args.quick else (5000, 3)
    if args.url:
        anyio.run(run, args.url, n, rounds, backend="asyncio")
        return
    with NatsServer(name="bench") as server:
        anyio.run(run, server.url, n, rounds, backend="asyncio")


if __name__ == "__main__":
    main()
