"""AmqpBroker publishing and consuming on RabbitMQ, beyond the conformance suite."""

from __future__ import annotations

import datetime
import json
import random
import time
from urllib.parse import quote

import anyio
import anyio.lowlevel
import pika
import pytest

from actorbus.brokers import (
    XH_ATTEMPT,
    XH_ATTEMPTS,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Topology,
)
from actorbus.brokers.amqp import AmqpBroker
from actorbus.exceptions import (
    BrokerConnectionError,
    ConfigurationError,
    ExchangeNotFoundError,
    PublishTooLargeError,
    UnroutableError,
)
from actorbus.testing._conformance import DeliveryCollector, drain, make_message

from ._helpers import declare_routed, eventually

pytestmark = [pytest.mark.amqp, pytest.mark.anyio]


async def test_publish_consume_ack_many(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique)
    async with anyio.create_task_group() as tg:
        collector = DeliveryCollector(ack_in=tg)
        sub = await broker.consume(spec.name, collector, prefetch=50)
        sent = [make_message(exchange, "order.created", b"%d" % i) for i in range(300)]
        await broker.publish_batch(sent)
        got = await collector.wait_for(300)
        assert [d.body for d in got] == [m.body for m in sent]  # one queue, one consumer: FIFO
        await sub.cancel()
    await eventually(lambda: _depth_is(broker, spec.name, 0), what="queue drained")
    assert broker.is_ready


async def _depth_is(broker: AmqpBroker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


async def test_out_of_order_settles_free_the_window_exactly_once(
    amqp_url: str, unique: str
) -> None:
    """Batched acks cover only settled runs: no tag is acked twice or lost, in any order."""
    async with AmqpBroker(amqp_url) as broker:
        exchange, spec = await declare_routed(broker, unique)
        collector = DeliveryCollector()
        sub = await broker.consume(spec.name, collector, prefetch=20)
        await broker.publish_batch([make_message(exchange, "order.x") for _ in range(60)])
        got = await collector.wait_for(20)
        for delivery in reversed(got[10:]):
            await delivery.ack()
        await got[5].nack(requeue=False)
        for delivery in got[:5] + got[6:10]:
            await delivery.ack()
        # Only acks that reached the broker free the prefetch window for the next 20.
        more = (await collector.wait_for(40))[20:]
        random.Random(7).shuffle(more)
        for delivery in more:
            await delivery.ack()
        rest = (await collector.wait_for(60))[40:]
        for delivery in rest[:-1]:
            await delivery.ack()
        await rest[-1].retry(0.05)
        await collector.wait_for(61)
        await collector.deliveries[60].ack()
        await eventually(lambda: _depth_is(broker, spec.dlq_name, 1), what="one dead-lettered")
        assert sub.active  # a double or unknown ack would have closed the channel (406)
    # Leaving requeues whatever was not acked: nothing, if every ack got through once.
    async with AmqpBroker(amqp_url) as observer:
        assert await observer.queue_depth(spec.name) == 0
        assert await observer.queue_depth(spec.dlq_name) == 1
    assert len(collector) == 61


async def test_unroutable_and_missing_exchange(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique)
    with pytest.raises(UnroutableError, match=r"'stock\.reserved'"):
        await broker.publish(make_message(exchange, "stock.reserved"))
    with pytest.raises(ExchangeNotFoundError, match=r"no-such-exchange.*'order\.created'"):
        await broker.publish(make_message(f"{unique}.no-such-exchange", "order.created"))

    # The publishing channel recovers from the 404 that closed it.
    await broker.publish(make_message(exchange, "order.created"))
    assert await broker.queue_depth(spec.name) == 1


async def test_retry_twice_then_dead_letter_with_error_headers(
    broker: AmqpBroker, unique: str
) -> None:
    exchange, spec = await declare_routed(broker, unique)
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=5)
    message = make_message(exchange, "order.created", b'{"n":1}', headers={"schemaVersion": 1})
    await broker.publish(message)
    first = (await collector.wait_for(1))[0]
    started = time.monotonic()
    await first.retry(0.05)
    second = (await collector.wait_for(2))[1]
    await second.retry(0.2, {"x-note": "slow"})
    third = (await collector.wait_for(3))[2]
    assert time.monotonic() - started >= 0.25
    assert [d.envelope.attempt for d in collector.deliveries] == [1, 2, 3]
    assert third.envelope.routing_key == "order.created"  # not the retry queue's name
    assert third.exchange == exchange
    assert third.envelope.headers["x-note"] == "slow"
    await third.dead_letter(
        {XH_REASON: "handler-error", XH_ERROR_TYPE: "ValueError", XH_ERROR_MESSAGE: "bad qty"}
    )
    await eventually(lambda: _depth_is(broker, spec.dlq_name, 1), what="dead-lettered")
    (dead,) = await drain(broker, spec.dlq_name)
    headers = dead.envelope.headers
    assert headers[XH_REASON] == "handler-error"
    assert headers[XH_ERROR_TYPE] == "ValueError"
    assert headers[XH_ERROR_MESSAGE] == "bad qty"
    assert headers[XH_ATTEMPTS] == 3
    assert headers[XH_ORIGINAL_EXCHANGE] == exchange
    assert headers[XH_ORIGINAL_ROUTING_KEY] == "order.created"
    assert headers[XH_ORIGINAL_QUEUE] == spec.name
    assert headers["schemaVersion"] == 1
    assert "x-death" not in headers
    assert dead.envelope.message_id == message.envelope.message_id
    assert dead.body == b'{"n":1}'


async def test_poison_nack_goes_to_dlq_by_broker(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique)
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=1)
    await broker.publish(make_message(exchange, "order.created", b"poison"))
    (delivery,) = await collector.wait_for(1)
    await delivery.nack(requeue=False)
    await eventually(lambda: _depth_is(broker, spec.dlq_name, 1), what="dead-lettered")
    (dead,) = await drain(broker, spec.dlq_name)
    assert dead.body == b"poison"
    (death,) = dead.envelope.headers["x-death"]
    assert death["reason"] == "rejected"
    assert death["queue"] == spec.name


async def test_quorum_delivery_count_is_the_attempt(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique, queue_type="quorum", delivery_limit=2)
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=1)
    await broker.publish(make_message(exchange, "order.created", b"q"))
    for n in range(1, 4):
        delivery = (await collector.wait_for(n))[n - 1]
        assert delivery.envelope.attempt == n
        assert delivery.envelope.redelivered == (n > 1)
        await delivery.nack(requeue=True)
    # delivery_limit=2: after the third delivery the broker dead-letters it.
    await eventually(lambda: _depth_is(broker, spec.dlq_name, 1), what="delivery limit")


async def test_quorum_retry_queue(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique, queue_type="quorum")
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=2)
    await broker.publish(make_message(exchange, "order.created"))
    first = (await collector.wait_for(1))[0]
    await first.retry(0.05)
    second = (await collector.wait_for(2))[1]
    assert second.envelope.attempt == 2
    assert second.envelope.headers[XH_ATTEMPT] == 2
    await second.ack()


def _pika_publish(url: str, exchange: str, routing_key: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_publish(
            exchange,
            routing_key,
            body,
            pika.BasicProperties(
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id="from-pika-1",
                correlation_id="o-9",
                priority=3,
                app_id="legacy-producer",
                user_id="guest",
                expiration="60000",
                timestamp=1_700_000_000,
                headers={
                    "schemaVersion": 1,
                    XH_ATTEMPT: "not a number",
                    "unknown-text": "x",
                    "unknown-table": {"nested": [1, "two", True]},
                    "unknown-bool": False,
                    "unknown-time": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
                },
            ),
        )
    finally:
        connection.close()


async def test_message_published_by_pika_with_unknown_fields(
    broker: AmqpBroker, unique: str, amqp_url: str
) -> None:
    exchange, spec = await declare_routed(broker, unique)
    body = json.dumps({"eventId": "e-1", "orderId": "o-9", "extra": {"new": "field"}}).encode()
    await anyio.to_thread.run_sync(_pika_publish, amqp_url, exchange, "order.created", body)
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=1)
    (delivery,) = await collector.wait_for(1)
    env = delivery.envelope
    assert delivery.body == body
    assert env.message_id == "from-pika-1"
    assert env.type == "order.created"  # no type property: the routing key
    assert env.routing_key == "order.created"
    assert env.correlation_id == "o-9"
    assert env.causation_id is None
    assert env.content_type == "application/json"
    assert env.timestamp == 1_700_000_000
    assert env.attempt == 1
    assert env.headers["schemaVersion"] == 1
    assert env.headers["unknown-table"] == {"nested": [1, "two", True]}
    await delivery.ack()


async def test_too_large_message_is_dead_lettered_unseen(amqp_url: str, unique: str) -> None:
    async with AmqpBroker(amqp_url, max_message_size=1000) as broker:
        exchange, spec = await declare_routed(broker, unique)
        collector = DeliveryCollector()
        await broker.consume(spec.name, collector, prefetch=5)
        with pytest.raises(PublishTooLargeError, match="1001 bytes"):
            await broker.publish(make_message(exchange, "order.big", b"x" * 1001))
    # Published by a producer without (or with a larger) limit.
    async with AmqpBroker(amqp_url) as producer:
        await producer.publish(make_message(exchange, "order.big", b"x" * 1001))
    async with AmqpBroker(amqp_url, max_message_size=1000) as broker:
        await broker.declare(Topology(queues=(spec,)))
        collector = DeliveryCollector()
        await broker.consume(spec.name, collector, prefetch=5)
        await broker.publish(make_message(exchange, "order.small", b"x" * 1000))
        (small,) = await collector.wait_for(1)
        assert small.envelope.routing_key == "order.small"
        await small.ack()
        await eventually(lambda: _depth_is(broker, spec.dlq_name, 1), what="too large")
        (dead,) = await drain(broker, spec.dlq_name)
        assert dead.envelope.headers[XH_REASON] == "message-too-large"
        assert "1001 bytes" in dead.envelope.headers[XH_ERROR_MESSAGE]
        assert len(collector) == 1


async def test_server_cancel_is_a_lost_consumer_then_resumed(
    broker: AmqpBroker, unique: str, amqp_url: str
) -> None:
    """A deleted queue cancels the consumer: not ready, then redeclared and consuming again."""
    exchange, spec = await declare_routed(broker, unique)
    collector = DeliveryCollector()
    sub = await broker.consume(spec.name, collector, prefetch=5)
    assert broker.is_ready
    lost = anyio.Event()
    sub_ref = sub

    async def watch() -> None:
        # Checked on every loop turn: the inactive spell lasts only until the re-consume.
        while sub_ref.active:
            await anyio.lowlevel.checkpoint()
        lost.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        # Delete the queue from another connection, as an operator (or a failover) would.
        async with AmqpBroker(amqp_url) as admin:
            channel = await admin._admin_channel()
            await channel.queue_delete(spec.name)
        with anyio.fail_after(10):
            await lost.wait()
    await eventually(lambda: sub.active and broker.is_ready, what="consumer resumed")
    assert await broker.consumer_count(spec.name) == 1
    await broker.publish(make_message(exchange, "order.after"))
    (delivery,) = await collector.wait_for(1)
    assert delivery.envelope.routing_key == "order.after"
    await delivery.ack()


async def test_requires_asyncio(amqp_url: str) -> None:
    broker = AmqpBroker(amqp_url)
    result: list[BaseException] = []

    async def enter() -> None:
        try:
            async with broker:
                pass
        except ConfigurationError as exc:
            result.append(exc)

    await anyio.to_thread.run_sync(lambda: anyio.run(enter, backend="trio"))
    assert result
    assert "asyncio only" in str(result[0])


async def test_unreachable_broker_error_hides_password() -> None:
    with pytest.raises(BrokerConnectionError) as caught:
        async with AmqpBroker("amqp://user:s3cr3t@127.0.0.1:1,127.0.0.1:2/vh", connect_timeout=2):
            pass  # pragma: no cover
    text = str(caught.value)
    assert "s3cr3t" not in text
    assert "127.0.0.1:1" in text
    assert "127.0.0.1:2" in text


async def test_bad_credentials(amqp_url: str) -> None:
    url = amqp_url.replace("guest:guest", "guest:wrong-password")
    with pytest.raises(BrokerConnectionError) as caught:
        async with AmqpBroker(url):
            pass  # pragma: no cover
    assert "wrong-password" not in str(caught.value)


def test_url_options_and_redaction() -> None:
    from actorbus.brokers.amqp._connection import parse_amqp_url

    endpoints, options, shown = parse_amqp_url(
        "amqps://app:p%40ss@h1:5671,h2/orders?heartbeat=5&cafile=/ca.pem&name=svc"
    )
    assert [(e.host, e.url.port) for e in endpoints] == [("h1", 5671), ("h2", 5671)]
    assert endpoints[0].url.password == "p@ss"
    assert endpoints[0].url.path == "/orders"
    assert options.heartbeat == 5
    assert options.cafile == "/ca.pem"
    assert options.name == "svc"
    assert "p%40ss" not in shown
    assert "p@ss" not in shown
    assert all("p@ss" not in e.redacted for e in endpoints)
    endpoints, _, _ = parse_amqp_url(["amqp://a:b@x/", "amqp://a:b@y:5673/"])
    assert [(e.host, e.url.port, e.url.path) for e in endpoints] == [
        ("x", 5672, "/"),
        ("y", 5673, "/"),
    ]
    with pytest.raises(ConfigurationError, match="not an AMQP URL"):
        parse_amqp_url("memory://")
    with pytest.raises(ConfigurationError, match="invalid port"):
        parse_amqp_url("amqp://u:secret@h:notaport/")


async def test_dead_letter_without_dlq_discards(broker: AmqpBroker, unique: str) -> None:
    exchange, spec = await declare_routed(broker, unique, dead_letter=False)
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=1)
    await broker.publish(make_message(exchange, "order.created"))
    (delivery,) = await collector.wait_for(1)
    await delivery.dead_letter({XH_REASON: "handler-error"})
    await broker.publish(make_message(exchange, "order.next"))
    (_, following) = await collector.wait_for(2)  # the first was settled: prefetch freed
    assert following.envelope.routing_key == "order.next"
    await following.ack()


async def test_failover_to_the_next_address(amqp_url: str) -> None:
    from actorbus.brokers.amqp._connection import parse_amqp_url

    (endpoint,), _, _ = parse_amqp_url(amqp_url)
    user, password = quote(endpoint.url.user or ""), quote(endpoint.url.password or "")
    url = (
        f"amqp://{user}:{password}@127.0.0.1:1,{endpoint.host}:{endpoint.url.port}"
        f"{endpoint.url.raw_path}"
    )
    async with AmqpBroker(url, connect_timeout=5) as broker:
        assert broker.is_ready
        assert broker._manager is not None
        assert broker._manager.endpoint is not None
        assert broker._manager.endpoint.url.port == endpoint.url.port
