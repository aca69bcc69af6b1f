"""A binding declared after a queue's subscription started reaches the running subscription.

On RabbitMQ a binding is the queue's business: consumers that are already running receive
what the new binding routes. On NATS a binding is a JetStream consumer of its own, so the
running subscription must start pulling from it.
"""

from __future__ import annotations

import pytest

from actorbus.brokers import Binding, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.nats import NatsBroker
from actorbus.testing._conformance import DeliveryCollector, make_message

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_a_binding_added_after_consume_is_consumed(nats_url: str) -> None:
    async with NatsBroker(nats_url) as broker:
        await broker.declare(
            Topology(
                exchanges=(ExchangeSpec("late.topic"),),
                queues=(QueueSpec("late.queue"),),
                bindings=(Binding("late.topic", "late.queue", "order.created"),),
            )
        )
        collector = DeliveryCollector()
        sub = await broker.consume("late.queue", collector, prefetch=10)
        await broker.declare(
            Topology(bindings=(Binding("late.topic", "late.queue", "stock.#"),))
        )  # two filter subjects: stock and stock.>
        for key in ("order.created", "stock", "stock.reserved"):
            await broker.publish(make_message("late.topic", key, key.encode(), mandatory=True))
        got = await collector.wait_for(3)
        assert sorted(d.body for d in got) == [b"order.created", b"stock", b"stock.reserved"]
        assert sub.active
        assert broker.is_ready
        for delivery in got:
            await delivery.ack()
        await sub.cancel()


async def test_a_binding_to_another_exchange_after_consume_is_consumed(nats_url: str) -> None:
    async with NatsBroker(nats_url) as broker:
        await broker.declare(
            Topology(exchanges=(ExchangeSpec("late2.topic"),), queues=(QueueSpec("late2.queue"),))
        )
        collector = DeliveryCollector()
        sub = await broker.consume("late2.queue", collector, prefetch=10)
        await broker.declare(
            Topology(
                exchanges=(ExchangeSpec("late2.fanout", type="fanout"),),
                bindings=(Binding("late2.fanout", "late2.queue", ""),),
            )
        )
        await broker.publish(make_message("late2.fanout", "any.key", b"fanned", mandatory=True))
        (delivery,) = await collector.wait_for(1)
        assert (delivery.body, delivery.exchange, delivery.envelope.routing_key) == (
            b"fanned",
            "late2.fanout",
            "any.key",
        )
        await delivery.ack()
        await sub.cancel()
        # a later subscription (a restart) consumes it from the start, as before
        again = DeliveryCollector()
        sub = await broker.consume("late2.queue", again, prefetch=10)
        await broker.publish(make_message("late2.fanout", "k", b"second", mandatory=True))
        (delivery,) = await again.wait_for(1)
        assert delivery.body == b"second"
        await delivery.ack()
        await sub.cancel()
