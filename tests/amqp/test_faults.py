"""AmqpBroker under broker faults, on a throwaway RabbitMQ node of this module.

Connections closed by the server, the node stopped and started again: consumers come back,
readiness goes false then true, nothing published with a confirm is lost.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from actorbus.brokers import Binding, Delivery, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.amqp import AmqpBroker
from actorbus.exceptions import BrokerConnectionError
from actorbus.testing._conformance import DeliveryCollector, make_message
from actorbus.testing._rabbitmq import RabbitMQNode, find_rabbitmq_server

from ._helpers import eventually

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(find_rabbitmq_server() is None, reason="needs rabbitmq-server"),
]


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitMQNode]:
    """A RabbitMQ node that these tests may stop, start and disconnect at will."""
    with RabbitMQNode(name="actorbus-faults") as started:
        yield started


def _broker(node: RabbitMQNode) -> AmqpBroker:
    return AmqpBroker(node.url, reconnect_delay=0.05, reconnect_max_delay=0.5, heartbeat=5)


def _topology(prefix: str, *queues: str) -> Topology:
    exchange = f"{prefix}.topic"
    specs = tuple(QueueSpec(f"{prefix}.{q}", retry_delays=(0.1,)) for q in queues)
    return Topology(
        exchanges=(ExchangeSpec(exchange),),
        queues=specs,
        bindings=tuple(Binding(exchange, s.name, "#") for s in specs),
    )


async def _publish_retrying(broker: AmqpBroker, exchange: str, count: int) -> list[str]:
    """Publish ``count`` messages; on a connection error publish the same message again."""
    ids: list[str] = []
    for i in range(count):
        message = make_message(exchange, "order.created", b"%d" % i)
        while True:
            try:
                await broker.publish(message)
                break
            except BrokerConnectionError:
                continue  # the caller's retry: the publish waits for the reconnection
        ids.append(message.envelope.message_id)
    return ids


async def test_connections_closed_by_server_mid_stream(node: RabbitMQNode, unique: str) -> None:
    topology = _topology(unique, "q")
    queue = topology.queues[0].name
    exchange = topology.exchanges[0].name
    seen: set[str] = set()
    all_seen = anyio.Event()
    wanted: set[str] = set()

    async with _broker(node) as broker, anyio.create_task_group() as tg:
        await broker.declare(topology)

        def on_delivery(delivery: Delivery) -> None:
            seen.add(delivery.envelope.message_id)
            tg.start_soon(delivery.ack)
            if wanted and wanted <= seen:
                all_seen.set()

        sub = await broker.consume(queue, on_delivery, prefetch=20)

        async def close_twice() -> None:
            for threshold in (50, 100):
                await eventually(lambda t=threshold: len(seen) >= t, what="some traffic")
                await anyio.to_thread.run_sync(node.close_all_connections)

        tg.start_soon(close_twice)
        ids = await _publish_retrying(broker, exchange, 400)
        wanted.update(ids)
        if wanted <= seen:
            all_seen.set()
        with anyio.fail_after(30):
            await all_seen.wait()
        await eventually(lambda: broker.is_ready and sub.active, what="ready again")
        assert await broker.consumer_count(queue) == 1
        await eventually(lambda: _depth(broker, queue, 0), what="queue drained")


async def _depth(broker: AmqpBroker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


async def test_node_restart_resumes_every_consumer(node: RabbitMQNode, unique: str) -> None:
    topology = _topology(unique, "a", "b", "c")
    queues = [q.name for q in topology.queues]
    exchange = topology.exchanges[0].name
    async with _broker(node) as broker:
        await broker.declare(topology)
        collectors = {q: DeliveryCollector(timeout=20) for q in queues}
        subs = [await broker.consume(q, collectors[q], prefetch=5) for q in queues]
        assert broker.is_ready
        # Held unacked across the restart: must come back, redelivered.
        await broker.publish(make_message(exchange, "before.stop"))
        for q in queues:
            await collectors[q].wait_for(1)
        stale = collectors[queues[0]].deliveries[0]

        await anyio.to_thread.run_sync(node.stop)
        await eventually(lambda: not broker.is_ready, what="not ready while the node is down")
        assert not any(sub.active for sub in subs)
        # Settling a delivery of the dead connection is a no-op, never an error.
        await stale.ack()

        publish_done = anyio.Event()

        async def publish_during_outage() -> None:
            await broker.publish(make_message(exchange, "during.outage"))
            publish_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_during_outage)
            await anyio.to_thread.run_sync(node.start)
            await eventually(lambda: broker.is_ready, timeout=30, what="ready after restart")
            assert all(sub.active for sub in subs)
            for q in queues:
                assert await broker.consumer_count(q) == 1, q
            with anyio.fail_after(30):
                await publish_done.wait()

        for q in queues:
            got = await collectors[q].wait_for(3)
            keys = [d.envelope.routing_key for d in got]
            assert keys[0] == "before.stop"
            assert sorted(keys[1:]) == ["before.stop", "during.outage"], q
            redelivered = next(d for d in got[1:] if d.envelope.routing_key == "before.stop")
            assert redelivered.envelope.redelivered
            assert redelivered.envelope.attempt == 2
            for delivery in got[1:]:
                await delivery.ack()
        for q in queues:
            await eventually(lambda q=q: _depth(broker, q, 0), what=f"{q} drained")


async def test_node_killed_then_started(node: RabbitMQNode, unique: str) -> None:
    topology = _topology(unique, "q")
    queue = topology.queues[0].name
    exchange = topology.exchanges[0].name
    async with _broker(node) as broker:
        await broker.declare(topology)
        await broker.publish(make_message(exchange, "durable.message"))
        await anyio.to_thread.run_sync(node.kill)
        await eventually(lambda: not broker.is_ready, what="connection loss noticed")
        await anyio.to_thread.run_sync(node.start)
        await eventually(lambda: broker.is_ready, timeout=30, what="reconnected")
        collector = DeliveryCollector(timeout=20)
        await broker.consume(queue, collector, prefetch=1)
        (delivery,) = await collector.wait_for(1)
        assert delivery.envelope.routing_key == "durable.message"  # persistent: survived
        await delivery.ack()
