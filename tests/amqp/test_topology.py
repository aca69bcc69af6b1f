"""AmqpBroker.declare on RabbitMQ: queues, dead-letter and retry queues, arguments, clashes."""

from __future__ import annotations

import aiormq
import pytest

from actorbus.brokers import Binding, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.amqp import AmqpBroker
from actorbus.brokers.amqp._topology import pick_retry_queue, queue_arguments, retry_tiers_ms
from actorbus.exceptions import (
    ExchangeNotFoundError,
    QueueNotFoundError,
    TopologyConflictError,
    TopologyError,
)

pytestmark = [pytest.mark.amqp, pytest.mark.anyio]


async def _arguments_match(
    url: str, queue: str, durable: bool, arguments: dict[str, object]
) -> bool:
    """Whether a declaration with exactly these arguments is equivalent (406 otherwise)."""
    async with aiormq.connect(url) as connection:
        channel = await connection.channel()
        try:
            await channel.queue_declare(queue, durable=durable, arguments=arguments)
        except aiormq.ChannelPreconditionFailed:
            return False
        return True


async def test_declares_queue_dlq_and_one_retry_queue_per_tier(
    broker: AmqpBroker, unique: str, amqp_url: str
) -> None:
    spec = QueueSpec(f"{unique}.q", retry_delays=(0.5, 2.0, 10.0))
    topology = Topology(
        exchanges=(ExchangeSpec(f"{unique}.topic"),),
        queues=(spec,),
        bindings=(Binding(f"{unique}.topic", spec.name, "order.#"),),
    )
    await broker.declare(topology)
    await broker.declare(topology)  # twice is harmless
    for name in (
        spec.name,
        spec.dlq_name,
        *(f"{spec.name}.retry.{ms}" for ms in (500, 2000, 10000)),
    ):
        assert await broker.queue_depth(name) == 0, name
    # The arguments are what the design says: DLX through the default exchange, TTL tiers.
    assert await _arguments_match(
        amqp_url,
        spec.name,
        True,
        {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": spec.dlq_name},
    )
    assert await _arguments_match(
        amqp_url,
        f"{spec.name}.retry.2000",
        True,
        {
            "x-message-ttl": 2000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": spec.name,
        },
    )


async def test_quorum_queue_with_delivery_limit_and_single_active_consumer(
    broker: AmqpBroker, unique: str, amqp_url: str
) -> None:
    spec = QueueSpec(
        f"{unique}.quorum",
        queue_type="quorum",
        delivery_limit=3,
        single_active_consumer=True,
        retry_delays=(0.1,),
    )
    await broker.declare(Topology(queues=(spec,)))
    assert await _arguments_match(amqp_url, spec.name, True, queue_arguments(spec))
    assert queue_arguments(spec)["x-queue-type"] == "quorum"
    assert queue_arguments(spec)["x-delivery-limit"] == 3
    assert queue_arguments(spec)["x-single-active-consumer"] is True
    assert await broker.queue_depth(f"{spec.name}.retry.100") == 0


async def test_clash_names_queue_argument_and_both_values(broker: AmqpBroker, unique: str) -> None:
    name = f"{unique}.clash"
    await broker.declare(Topology(queues=(QueueSpec(name, max_length=10),)))
    with pytest.raises(TopologyConflictError) as caught:
        await broker.declare(Topology(queues=(QueueSpec(name, max_length=20),)))
    error = caught.value
    assert isinstance(error, TopologyError)
    assert (error.kind, error.name, error.argument) == ("queue", name, "x-max-length")
    assert "20" in error.requested
    assert "10" in error.existing
    message = str(error)
    assert name in message
    assert "x-max-length" in message
    assert "10" in message
    assert "20" in message
    # The failed declaration closed only the declaring channel: the broker carries on.
    await broker.declare(Topology(queues=(QueueSpec(name, max_length=10),)))
    assert await broker.queue_depth(name) == 0


async def test_clash_of_queue_type(broker: AmqpBroker, unique: str) -> None:
    name = f"{unique}.typed"
    await broker.declare(Topology(queues=(QueueSpec(name),)))
    with pytest.raises(TopologyError, match=r"x-queue-type.*'quorum'"):
        await broker.declare(Topology(queues=(QueueSpec(name, queue_type="quorum"),)))


async def test_clash_of_exchange_type(broker: AmqpBroker, unique: str) -> None:
    name = f"{unique}.ex"
    await broker.declare(Topology(exchanges=(ExchangeSpec(name, "topic"),)))
    with pytest.raises(TopologyConflictError, match=r"exchange .*type.*'topic'.*'direct'"):
        await broker.declare(Topology(exchanges=(ExchangeSpec(name, "direct"),)))


async def test_binding_to_unknown_exchange_is_a_topology_error(
    broker: AmqpBroker, unique: str
) -> None:
    spec = QueueSpec(f"{unique}.q", retry_delays=())
    with pytest.raises(ExchangeNotFoundError, match=f"{unique}.nowhere"):
        await broker.declare(
            Topology(queues=(spec,), bindings=(Binding(f"{unique}.nowhere", spec.name, "#"),))
        )


async def test_unknown_queue_is_queue_not_found(broker: AmqpBroker, unique: str) -> None:
    missing = f"{unique}.missing"
    for operation in (broker.queue_depth, broker.purge, broker.get):
        with pytest.raises(QueueNotFoundError, match=missing.replace(".", r"\.")):
            await operation(missing)


def test_retry_tier_selection() -> None:
    spec = QueueSpec("q", retry_delays=(2.0, 0.5, 10.0, 0.5))
    tiers = retry_tiers_ms(spec)
    assert tiers == (500, 2000, 10000)
    assert pick_retry_queue("q", tiers, 0.0) == "q.retry.500"
    assert pick_retry_queue("q", tiers, 0.5) == "q.retry.500"
    assert pick_retry_queue("q", tiers, 0.6) == "q.retry.500"  # a jittered 0.5 s stays
    assert pick_retry_queue("q", tiers, 1.2) == "q.retry.2000"
    assert pick_retry_queue("q", tiers, 60) == "q.retry.10000"
    assert pick_retry_queue("q", (), 1.0) is None
