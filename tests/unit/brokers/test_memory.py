"""Memory-broker specifics beyond the conformance suite: faults, clock, AMQP edge cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from actorbus._clock import ManualClock
from actorbus.brokers import (
    XH_ATTEMPT,
    XH_ORIGINAL_QUEUE,
    XH_REASON,
    Binding,
    Broker,
    Delivery,
    ExchangeSpec,
    QueueSpec,
    Subscription,
    Topology,
)
from actorbus.brokers.memory import MemoryBroker
from actorbus.exceptions import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    ExchangeNotFoundError,
    MessageTooLargeError,
    PublishError,
    PublishNackedError,
    PublishTooLargeError,
    QueueNotFoundError,
    TopologyError,
)
from actorbus.testing._conformance import DeliveryCollector, drain, make_message

pytestmark = pytest.mark.anyio

EX = "orders.topic"
Q = "inventory.queue"


def topology(**queue_options: object) -> Topology:
    return Topology(
        exchanges=(ExchangeSpec(EX),),
        queues=(QueueSpec(Q, **queue_options),),  # type: ignore[arg-type]
        bindings=(Binding(EX, Q, "order.#"),),
    )


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker() as broker:
        await broker.declare(topology())
        yield broker


async def publish(broker: MemoryBroker, count: int = 1, key: str = "order.created") -> list[str]:
    ids = []
    for i in range(count):
        message = make_message(EX, key, b"%d" % i)
        await broker.publish(message)
        ids.append(message.envelope.message_id)
    return ids


def active(sub: Subscription) -> bool:
    return sub.active  # a call: no type narrowing across state changes


def ready(broker: MemoryBroker) -> bool:
    return broker.is_ready


# ------------------------------------------------------------------------ protocol


async def test_implements_the_protocols(broker: MemoryBroker) -> None:
    typed: Broker = broker  # checked by mypy, structurally
    assert isinstance(typed, Broker)
    collector = DeliveryCollector()
    sub = await broker.consume(Q, collector, prefetch=1)
    await publish(broker)
    assert isinstance(sub, Subscription)
    assert isinstance(collector.deliveries[0], Delivery)


async def test_delivery_is_synchronous_on_publish(broker: MemoryBroker) -> None:
    collector = DeliveryCollector()
    await broker.consume(Q, collector, prefetch=10)
    await anyio.wait_all_tasks_blocked()
    await publish(broker)
    assert len(collector) == 1  # handed over inside publish, no task in between


async def test_direct_hand_over_keeps_prefetch_and_order(broker: MemoryBroker) -> None:
    # The first is handed straight to the consumer; the next two wait (prefetch 1); one
    # published while they wait queues behind them; each ack brings the next, in order.
    collector = DeliveryCollector()
    await broker.consume(Q, collector, prefetch=1)
    await publish(broker, 3)
    assert [d.body for d in collector.deliveries] == [b"0"]
    assert await broker.queue_depth(Q) == 2
    await broker.publish(make_message(EX, "order.created", b"3"))
    for n in range(1, 5):
        await collector.deliveries[-1].ack()
        assert len(collector) == min(n + 1, 4)
    assert [d.body for d in collector.deliveries] == [b"0", b"1", b"2", b"3"]
    assert await broker.queue_depth(Q) == 0


@pytest.mark.parametrize("url", ["amqp://localhost", "nonsense"])
def test_needs_a_memory_url(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MemoryBroker(url)


def test_bad_max_message_size() -> None:
    with pytest.raises(ConfigurationError, match="max_message_size"):
        MemoryBroker(max_message_size=0)


async def test_operations_need_an_entered_broker() -> None:
    broker = MemoryBroker()
    with pytest.raises(BrokerConnectionError, match="async with broker"):
        await broker.declare(topology())
    async with broker:
        await broker.declare(topology())
    with pytest.raises(BrokerConnectionError):
        await broker.publish(make_message(EX, "order.created"))


async def test_entering_twice_fails(broker: MemoryBroker) -> None:
    with pytest.raises(BrokerError, match="already entered"):
        await broker.__aenter__()


async def test_reentering_keeps_the_state() -> None:
    broker = MemoryBroker()
    async with broker:
        await broker.declare(topology())
        await publish(broker, 2)
    async with broker:
        assert await broker.queue_depth(Q) == 2


async def test_named_servers_are_shared_private_ones_not() -> None:
    async with MemoryBroker("memory://shared-x") as a, MemoryBroker("memory://shared-x") as b:
        await a.declare(topology())
        await publish(b, 1)
        assert await a.queue_depth(Q) == 1
        async with MemoryBroker() as private:
            with pytest.raises(QueueNotFoundError):
                await private.queue_depth(Q)


async def test_prefetch_must_be_positive(broker: MemoryBroker) -> None:
    with pytest.raises(ConfigurationError, match=r"prefetch for queue 'inventory.queue'"):
        await broker.consume(Q, DeliveryCollector(), prefetch=0)


# ------------------------------------------------------------------------ topology


async def test_redeclare_queue_names_argument_and_both_values(broker: MemoryBroker) -> None:
    with pytest.raises(
        TopologyError,
        match=r"queue 'inventory\.queue' already exists with queue_type='classic'; "
        r"cannot redeclare it with queue_type='quorum'",
    ):
        await broker.declare(topology(queue_type="quorum"))


async def test_redeclare_exchange_with_other_type(broker: MemoryBroker) -> None:
    with pytest.raises(TopologyError, match=r"exchange 'orders\.topic'.*type='topic'.*'fanout'"):
        await broker.declare(Topology(exchanges=(ExchangeSpec(EX, "fanout"),)))


async def test_default_exchange_cannot_be_declared_or_bound(broker: MemoryBroker) -> None:
    with pytest.raises(TopologyError, match="default exchange"):
        await broker.declare(Topology(exchanges=(ExchangeSpec(""),)))
    with pytest.raises(TopologyError, match="default exchange"):
        await broker.declare(Topology(bindings=(Binding("", Q, Q),)))


async def test_binding_needs_declared_exchange_and_queue(broker: MemoryBroker) -> None:
    with pytest.raises(ExchangeNotFoundError, match=r"'nope\.topic'"):
        await broker.declare(Topology(bindings=(Binding("nope.topic", Q, "#"),)))
    with pytest.raises(QueueNotFoundError, match=r"'nope\.queue'"):
        await broker.declare(Topology(bindings=(Binding(EX, "nope.queue", "#"),)))


async def test_publish_to_unknown_exchange(broker: MemoryBroker) -> None:
    with pytest.raises(ExchangeNotFoundError, match=r"'nope'.*routing key 'order\.created'"):
        await broker.publish(make_message("nope", "order.created"))


async def test_explicit_dlq_declaration_takes_over_the_automatic_one(
    broker: MemoryBroker,
) -> None:
    await broker.declare(Topology(queues=(QueueSpec(f"{Q}.dlq", dead_letter=False),)))
    assert await broker.queue_depth(f"{Q}.dlq") == 0


# ---------------------------------------------------------------------- settlement


async def test_nack_requeues_at_the_head_as_next_attempt(broker: MemoryBroker) -> None:
    collector = DeliveryCollector()
    await broker.consume(Q, collector, prefetch=1)
    ids = await publish(broker, 3)
    first = collector.deliveries[0]
    await first.nack(requeue=True)
    again = collector.deliveries[1]
    assert again.envelope.message_id == ids[0]
    assert (again.envelope.redelivered, again.envelope.attempt) == (True, 2)
    assert not first.envelope.redelivered  # envelopes are copied, never mutated


async def test_nack_without_requeue_records_reason(broker: MemoryBroker) -> None:
    await publish(broker)
    delivery = await broker.get(Q)
    assert delivery is not None
    await delivery.nack(requeue=False)
    (dead,) = await drain(broker, f"{Q}.dlq")
    assert dead.envelope.headers[XH_REASON] == "rejected"
    assert dead.envelope.headers[XH_ORIGINAL_QUEUE] == Q


async def test_retry_waits_for_the_clock_and_its_tier() -> None:
    clock = ManualClock()
    async with MemoryBroker(clock=clock) as broker:
        await broker.declare(topology(retry_delays=(1.0, 5.0)))
        collector = DeliveryCollector()
        await broker.consume(Q, collector, prefetch=10)
        await publish(broker)
        await collector.deliveries[0].retry(3.0)  # the nearest tier: 5 s
        await clock.wait_for_sleepers(1)
        await clock.advance(4.9)
        assert len(collector) == 1
        assert await broker.queue_depth(Q) == 0
        await clock.advance(0.1)
        assert len(collector) == 2
        back = collector.deliveries[1].envelope
        assert (back.attempt, back.headers[XH_ATTEMPT], back.redelivered) == (2, 2, False)


async def test_retry_longer_than_every_tier_uses_the_longest() -> None:
    clock = ManualClock()
    async with MemoryBroker(clock=clock) as broker:
        await broker.declare(topology(retry_delays=(1.0, 5.0)))
        await publish(broker)
        delivery = await broker.get(Q)
        assert delivery is not None
        await delivery.retry(60.0)
        await clock.wait_for_sleepers(1)
        await clock.advance(5.0)
        assert await broker.queue_depth(Q) == 1


async def test_retry_without_tiers_or_delay_goes_to_the_tail() -> None:
    async with MemoryBroker() as broker:
        await broker.declare(topology(retry_delays=()))
        ids = await publish(broker, 2)
        first = await broker.get(Q)
        assert first is not None
        await first.retry(0.0)
        assert [d.envelope.message_id for d in await drain(broker, Q)] == [ids[1], ids[0]]


async def test_closing_releases_waiting_retries() -> None:
    clock = ManualClock()
    broker = MemoryBroker(clock=clock)
    async with broker:
        await broker.declare(topology())
        await publish(broker)
        delivery = await broker.get(Q)
        assert delivery is not None
        await delivery.retry(30.0)
        assert await broker.queue_depth(Q) == 0
    async with broker:
        (back,) = await drain(broker, Q)
        assert back.envelope.attempt == 2


async def test_closing_requeues_get_deliveries() -> None:
    broker = MemoryBroker()
    async with broker:
        await broker.declare(topology())
        await publish(broker, 2)
        held = await broker.get(Q)
        assert held is not None
    await held.ack()  # stale: the broker requeued it when it closed
    async with broker:
        got = await drain(broker, Q)
        assert [d.body for d in got] == [b"0", b"1"]
        assert got[0].envelope.redelivered


async def test_dead_letter_without_dlq_discards(broker: MemoryBroker) -> None:
    await broker.declare(Topology(queues=(QueueSpec("plain", dead_letter=False),)))
    await broker.publish(make_message("", "plain"))
    delivery = await broker.get("plain")
    assert delivery is not None
    await delivery.dead_letter({XH_REASON: "handler-error"})
    assert await broker.queue_depth("plain") == 0
    with pytest.raises(QueueNotFoundError):
        await broker.queue_depth("plain.dlq")


# ------------------------------------------------------------------ queue features


async def test_round_robin_between_consumers(broker: MemoryBroker) -> None:
    first, second = DeliveryCollector(), DeliveryCollector()
    await broker.consume(Q, first, prefetch=10)
    await broker.consume(Q, second, prefetch=10)
    await publish(broker, 6)
    assert [d.body for d in first.deliveries] == [b"0", b"2", b"4"]
    assert [d.body for d in second.deliveries] == [b"1", b"3", b"5"]


async def test_single_active_consumer() -> None:
    async with MemoryBroker() as broker:
        await broker.declare(topology(single_active_consumer=True))
        first, second = DeliveryCollector(), DeliveryCollector()
        sub = await broker.consume(Q, first, prefetch=10)
        await broker.consume(Q, second, prefetch=10)
        await publish(broker, 3)
        assert (len(first), len(second)) == (3, 0)
        await sub.cancel()
        await publish(broker, 1)
        assert (len(first), len(second)) == (3, 1)


async def test_max_length_dead_letters_the_head() -> None:
    async with MemoryBroker() as broker:
        await broker.declare(topology(max_length=2))
        ids = await publish(broker, 3)
        assert [d.envelope.message_id for d in await drain(broker, Q)] == ids[1:]
        (dropped,) = await drain(broker, f"{Q}.dlq")
        assert dropped.envelope.message_id == ids[0]
        assert dropped.envelope.headers[XH_REASON] == "maxlen"


async def test_delivery_limit_dead_letters_poison_messages() -> None:
    async with MemoryBroker() as broker:
        await broker.declare(topology(queue_type="quorum", delivery_limit=2))
        collector = DeliveryCollector()
        await broker.consume(Q, collector, prefetch=1)
        await publish(broker)
        for i in range(3):
            await collector.deliveries[i].nack(requeue=True)
        assert len(collector) == 3  # first delivery + 2 redeliveries
        (dead,) = await drain(broker, f"{Q}.dlq")
        assert dead.envelope.headers[XH_REASON] == "delivery-limit"


async def test_failing_callback_stops_its_subscription(broker: MemoryBroker) -> None:
    def explode(delivery: Delivery) -> None:
        raise RuntimeError("boom")

    bad = await broker.consume(Q, explode, prefetch=5)
    good = DeliveryCollector()
    await publish(broker, 1)
    assert not bad.active
    assert not broker.is_ready
    assert await broker.queue_depth(Q) == 1  # requeued, not lost
    await broker.consume(Q, good, prefetch=5)
    (delivery,) = await good.wait_for(1, within=5)
    assert delivery.envelope.redelivered
    await bad.cancel()
    assert broker.is_ready


# -------------------------------------------------------------------------- faults


async def test_fail_next_publishes(broker: MemoryBroker) -> None:
    broker.faults.fail_next_publishes(2)
    for _ in range(2):
        with pytest.raises(PublishNackedError, match=r"'orders\.topic' / 'order\.created'"):
            await publish(broker)
    assert broker.faults.pending_publish_failures == 0
    await publish(broker)
    assert await broker.queue_depth(Q) == 1


async def test_publish_batch_raises_the_first_failure_after_the_rest(
    broker: MemoryBroker,
) -> None:
    broker.faults.fail_next_publishes(1)
    messages = [make_message(EX, "order.created") for _ in range(5)]
    with pytest.raises(PublishNackedError) as info:
        await broker.publish_batch(messages)
    assert info.value.message_id == messages[0].envelope.message_id
    assert await broker.queue_depth(Q) == 4


async def test_drop_connection_and_restore(broker: MemoryBroker) -> None:
    collector = DeliveryCollector()
    sub = await broker.consume(Q, collector, prefetch=5)
    await publish(broker, 2)
    held = collector.deliveries[0]
    broker.faults.drop_connection()
    assert broker.faults.connection_dropped
    assert not broker.is_ready
    assert not active(sub)
    with pytest.raises(BrokerConnectionError, match="connection lost"):
        await publish(broker)
    with pytest.raises(BrokerConnectionError):
        await broker.queue_depth(Q)
    await held.ack()  # lost with the connection: the broker redelivers it
    broker.faults.restore()
    assert ready(broker)
    assert active(sub)
    redelivered = collector.deliveries[2:]
    assert [d.body for d in redelivered] == [b"0", b"1"]
    assert all(d.envelope.redelivered for d in redelivered)


async def test_duplicate_next_delivery(broker: MemoryBroker) -> None:
    collector = DeliveryCollector()
    await broker.consume(Q, collector, prefetch=5)
    broker.faults.duplicate_next_deliveries(1)
    (message_id,) = await publish(broker)
    await publish(broker)
    assert collector.message_ids[:2] == [message_id, message_id]
    assert collector.deliveries[1].envelope.redelivered
    assert len(collector) == 3


async def test_reset_disarms_faults(broker: MemoryBroker) -> None:
    broker.faults.fail_next_publishes(3)
    broker.faults.duplicate_next_deliveries(3)
    broker.faults.drop_connection()
    broker.faults.reset()
    assert broker.is_ready
    collector = DeliveryCollector()
    await broker.consume(Q, collector, prefetch=5)
    await publish(broker)
    assert len(collector) == 1


async def test_fault_counts_must_not_be_negative(broker: MemoryBroker) -> None:
    with pytest.raises(ConfigurationError):
        broker.faults.fail_next_publishes(-1)
    with pytest.raises(ConfigurationError):
        broker.faults.duplicate_next_deliveries(-1)


async def test_max_message_size() -> None:
    async with MemoryBroker(max_message_size=4) as broker:
        await broker.declare(topology())
        with pytest.raises(PublishTooLargeError, match="5 bytes exceeds the limit of 4") as info:
            await broker.publish(make_message(EX, "order.created", b"12345"))
        assert isinstance(info.value, PublishError)
        assert isinstance(info.value, MessageTooLargeError)
        await broker.publish(make_message(EX, "order.created", b"1234"))
        assert await broker.queue_depth(Q) == 1
