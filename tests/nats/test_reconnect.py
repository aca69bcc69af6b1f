"""A restarted nats-server: every consumer comes back and nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from actorbus.brokers import Binding, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.nats import NatsBroker
from actorbus.testing import NatsCluster, NatsServer
from actorbus.testing._conformance import DeliveryCollector, make_message, wait_until

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

TOPOLOGY = Topology(
    exchanges=(ExchangeSpec("orders.topic"),),
    queues=(QueueSpec("inventory.queue"),),
    bindings=(Binding("orders.topic", "inventory.queue", "order.created"),),
)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer(name="restart") as node:
        yield node


async def _publish_retrying(broker: NatsBroker, count: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + count):
        message = make_message("orders.topic", "order.created", b"%d" % i)
        for _ in range(100):  # what an outbox relay does: publish again until acked
            try:
                await broker.publish(message)
                break
            except Exception:
                await anyio.sleep(0.1)
        ids.append(message.envelope.message_id)
    return ids


async def test_restart_restores_consumers_and_loses_nothing(server: NatsServer) -> None:
    async with NatsBroker(server.url) as broker, anyio.create_task_group() as tg:
        await broker.declare(TOPOLOGY)
        collector = DeliveryCollector(ack_in=tg, timeout=30)
        await broker.consume("inventory.queue", collector, prefetch=10)
        sent = await _publish_retrying(broker, 50, 0)
        await collector.wait_for(50)
        assert broker.is_ready
        await anyio.to_thread.run_sync(server.stop)
        await wait_until(lambda: not broker.is_ready, what="not ready while the server is down")
        await anyio.to_thread.run_sync(server.start)
        await wait_until(lambda: broker.is_ready, within=30, what="ready again")
        sent += await _publish_retrying(broker, 50, 50)
        await wait_until(lambda: set(sent) <= set(collector.message_ids), within=30, what="all 100")
        tg.cancel_scope.cancel()


@pytest.mark.slow
async def test_cluster_survives_a_lost_node() -> None:
    with NatsCluster() as cluster:
        url = cluster.url + "?replicas=3"
        async with NatsBroker(url) as broker, anyio.create_task_group() as tg:
            for _ in range(100):  # the meta leader may still be being elected
                try:
                    await broker.declare(TOPOLOGY)
                    break
                except Exception:
                    await anyio.sleep(0.2)
            collector = DeliveryCollector(ack_in=tg, timeout=60)
            await broker.consume("inventory.queue", collector, prefetch=10)
            sent = await _publish_retrying(broker, 50, 0)
            await collector.wait_for(50)
            connected = broker._nc.connected_url.port if broker._nc else None
            lost = next(n for n in cluster.nodes if n.port == connected)
            await anyio.to_thread.run_sync(lost.kill)
            sent += await _publish_retrying(broker, 50, 50)
            await wait_until(
                lambda: set(sent) <= set(collector.message_ids), within=60, what="all 100"
            )
            await wait_until(lambda: broker.is_ready, within=30, what="ready on the survivors")
            tg.cancel_scope.cancel()
