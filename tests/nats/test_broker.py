"""NATS broker behaviour beyond the conformance suite: bad input, URLs, dedup, errors."""

from __future__ import annotations

import anyio
import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy

from actorbus.brokers import (
    REASON_MESSAGE_TOO_LARGE,
    XH_REASON,
    Binding,
    ExchangeSpec,
    QueueSpec,
    Topology,
    connect,
    peek_dead_letters,
)
from actorbus.brokers.nats import NatsBroker
from actorbus.brokers.nats._mapping import stream_name
from actorbus.brokers.nats._options import parse_nats_url
from actorbus.exceptions import (
    BrokerConnectionError,
    ConfigurationError,
    ExchangeNotFoundError,
    PublishNackedError,
    TopologyError,
)
from actorbus.testing._conformance import DeliveryCollector, drain, make_message, wait_until

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def topology(name: str) -> Topology:
    return Topology(
        exchanges=(ExchangeSpec(f"{name}.topic"),),
        queues=(QueueSpec(f"{name}.queue", retry_delays=(0.05,)),),
        bindings=(Binding(f"{name}.topic", f"{name}.queue", "order.#"),),
    )


def test_url_with_several_servers_and_credentials_is_redacted() -> None:
    opts = parse_nats_url("nats://alice:s3cret@h1:4222,h2,nats://h3:4333?replicas=3&ack_wait=5")
    assert opts.servers == ["nats://h1:4222", "nats://h2:4222", "nats://h3:4333"]
    assert (opts.user, opts.password, opts.replicas, opts.ack_wait) == ("alice", "s3cret", 3, 5.0)
    assert "s3cret" not in opts.redacted
    assert "***" in opts.redacted
    assert parse_nats_url("tls://h1:4222").servers == ["tls://h1:4222"]
    with pytest.raises(ConfigurationError, match="replicas"):
        parse_nats_url("nats://h1?replicas=x")


async def test_server_down_gives_a_clear_error_with_redacted_url() -> None:
    broker = connect("nats://bob:hunter2@127.0.0.1:1")
    with pytest.raises(BrokerConnectionError, match=r"nats://bob:\*\*\*@127\.0\.0\.1:1") as info:
        async with broker:
            pass
    assert "hunter2" not in str(info.value)


async def test_hash_in_the_middle_of_a_pattern_is_refused(nats_url: str) -> None:
    async with NatsBroker(nats_url) as broker:
        with pytest.raises(TopologyError, match=r"'a\.#\.b'.*'>' must be last"):
            await broker.declare(
                Topology(
                    exchanges=(ExchangeSpec("mid.topic"),),
                    queues=(QueueSpec("mid.queue"),),
                    bindings=(Binding("mid.topic", "mid.queue", "a.#.b"),),
                )
            )


async def test_a_repeated_message_id_is_stored_once(nats_url: str) -> None:
    async with NatsBroker(nats_url) as broker:
        await broker.declare(topology("dedup"))
        message = make_message("dedup.topic", "order.created", b"once")
        await broker.publish(message)
        await broker.publish(message)  # a publisher retrying after a lost ack
        await broker.publish_batch([message, message])
        await wait_until(lambda: broker.queue_depth("dedup.queue"), what="one message")
        assert [d.body for d in await drain(broker, "dedup.queue")] == [b"once"]


async def test_oversized_message_is_dead_lettered_with_the_reason(nats_url: str) -> None:
    async with (
        NatsBroker(nats_url) as producer,
        NatsBroker(nats_url, max_message_size=100) as consumer,
    ):
        await producer.declare(topology("big"))
        await producer.publish(make_message("big.topic", "order.created", b"x" * 1000))
        await producer.publish(make_message("big.topic", "order.created", b"small"))
        collector = DeliveryCollector()
        await consumer.consume("big.queue", collector, prefetch=10)
        (small,) = await collector.wait_for(1)
        assert small.body == b"small"
        await small.ack()
        await wait_until(lambda: consumer.queue_depth("big.queue.dlq"), what="a dead letter")
        (dead,) = await peek_dead_letters(consumer, "big.queue")
        assert dead.reason == REASON_MESSAGE_TOO_LARGE
        assert "1000 bytes exceeds the limit of 100" in dead.error
        assert dead.original_routing_key == "order.created"


async def test_malformed_payload_reaches_the_consumer_and_can_be_dead_lettered(
    nats_url: str,
) -> None:
    async with NatsBroker(nats_url) as broker:
        await broker.declare(topology("bad"))
        await broker.publish(make_message("bad.topic", "order.created", b"{not json"))
        collector = DeliveryCollector()
        await broker.consume("bad.queue", collector, prefetch=1)
        (delivery,) = await collector.wait_for(1)
        await delivery.dead_letter({XH_REASON: "decode-error"})
        await wait_until(lambda: broker.queue_depth("bad.queue.dlq"), what="a dead letter")
        (dead,) = await peek_dead_letters(broker, "bad.queue")
        assert dead.reason == "decode-error"
        assert dead.body == "{not json"
        with anyio.fail_after(5):
            assert await broker.queue_depth("bad.queue.dlq") == 1  # peek left it in place


async def test_a_refused_publish_names_jetstream_s_reason(nats_url: str) -> None:
    # A JetStream error reply ({"error": {...}}) is a nack: not stored, the caller retries.
    async with NatsBroker(nats_url) as broker:
        await broker.declare(topology("full"))
        info = await broker.js.stream_info(stream_name("full.topic"))
        config = info.config
        config.max_msgs, config.discard = 1, DiscardPolicy.NEW
        await broker.js.update_stream(config)
        await broker.publish(make_message("full.topic", "order.created", b"first"))
        refused = make_message("full.topic", "order.created", b"second")
        with pytest.raises(PublishNackedError, match="maximum messages exceeded") as info_:
            await broker.publish(refused)
        assert info_.value.message_id == refused.envelope.message_id
        assert (info_.value.exchange, info_.value.routing_key) == ("full.topic", "order.created")
        with pytest.raises(PublishNackedError, match="maximum messages exceeded"):
            await broker.publish_batch([make_message("full.topic", "order.created", b"third")])


async def test_a_subject_without_stream_is_an_unknown_exchange(nats_url: str) -> None:
    async with NatsBroker(nats_url) as broker:
        message = make_message("nowhere.topic", "order.created", mandatory=False)
        with pytest.raises(ExchangeNotFoundError, match=r"nowhere\.topic"):
            await broker.publish(message)
        with pytest.raises(ExchangeNotFoundError, match=r"nowhere\.topic"):
            await broker.publish_batch([message])


async def test_lost_acks_fail_publish_and_publish_batch_within_the_timeout(nats_url: str) -> None:
    # A responder that never answers stands for acks lost with a connection: js.publish_async's
    # futures would wait for ever; the broker's fail after request_timeout.
    silent = await nats.connect(nats_url)
    try:
        await silent.subscribe("silent.topic.>", cb=_ignore)
        await silent.flush()
        async with NatsBroker(nats_url, request_timeout=0.3) as broker:
            messages = [make_message("silent.topic", "k", mandatory=False) for _ in range(3)]
            with anyio.fail_after(5):
                with pytest.raises(BrokerConnectionError, match="no JetStream ack"):
                    await broker.publish(messages[0])
                with pytest.raises(BrokerConnectionError, match="no JetStream ack"):
                    await broker.publish_batch(messages)
    finally:
        await silent.close()


async def _ignore(msg: Msg) -> None:
    return None
