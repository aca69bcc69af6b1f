"""What the conformance suite does not pin but ``memory://`` does: max_length,
delivery_limit, single active consumer, retries that wait on disk across a restart, and the
URL's options."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actorbus.brokers import XH_REASON, OutboundMessage, QueueSpec, Topology, connect
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.exceptions import ConfigurationError
from actorbus.messages import Envelope
from actorbus.testing._conformance import DeliveryCollector, drain, wait_until

pytestmark = pytest.mark.anyio

Q = "sem.queue"


def message(body: bytes) -> OutboundMessage:
    return OutboundMessage("", Envelope(uuid.uuid4().hex, "test", Q), body)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.sqlite3'}"


async def test_max_length_dead_letters_the_oldest(url: str) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(Q, max_length=2),)))
        for i in range(4):
            await broker.publish(message(b"%d" % i))
        assert [d.body for d in await drain(broker, Q)] == [b"2", b"3"]
        dead = await drain(broker, f"{Q}.dlq")
        assert [d.body for d in dead] == [b"0", b"1"]
        assert all(d.envelope.headers[XH_REASON] == "maxlen" for d in dead)


async def test_delivery_limit_dead_letters_a_poison_message(url: str) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(Q, delivery_limit=1),)))
        await broker.publish(message(b"poison"))
        for attempt in (1, 2):
            d = await broker.get(Q)
            assert d is not None
            assert d.envelope.attempt == attempt
            await d.nack(requeue=True)
        assert await broker.get(Q) is None
        (dead,) = await drain(broker, f"{Q}.dlq")
        assert dead.envelope.headers[XH_REASON] == "delivery-limit"


async def test_single_active_consumer_hands_over_on_cancel(url: str) -> None:
    async with SqliteBroker(url) as one, SqliteBroker(url) as two:
        await one.declare(Topology(queues=(QueueSpec(Q, single_active_consumer=True),)))
        first, second = DeliveryCollector(), DeliveryCollector()
        sub = await one.consume(Q, first, prefetch=10)
        await one.publish(message(b"0"))
        await first.wait_for(1)  # ``one`` holds the queue's active slot now
        await two.consume(Q, second, prefetch=10)
        await one.publish_batch([message(b"%d" % i) for i in (1, 2)])
        await first.wait_for(3)
        assert len(second) == 0, "the standby consumer must not receive"
        for d in first.deliveries:
            await d.ack()
        await sub.cancel()
        await one.publish(message(b"after"))
        (taken,) = await second.wait_for(1)
        assert taken.body == b"after"
        await taken.ack()


async def test_a_retry_waits_on_disk_across_a_restart(url: str) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(Q, retry_delays=(0.3,)),)))
        await broker.publish(message(b"later"))
        d = await broker.get(Q)
        assert d is not None
        await d.retry(0.3, {"x-note": "kept"})
    async with SqliteBroker(url) as broker:
        collector = DeliveryCollector()
        await broker.consume(Q, collector, prefetch=1)
        (again,) = await collector.wait_for(1)
        assert again.envelope.attempt == 2
        assert again.envelope.headers["x-note"] == "kept"
        await again.ack()


async def test_connect_picks_the_sqlite_broker(url: str) -> None:
    async with connect(url) as broker:
        assert isinstance(broker, SqliteBroker)
        assert broker.is_ready
        await wait_until(lambda: broker.hints_enabled, what="hints")
    assert not broker.is_ready


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://", "names no file"),
        ("sqlite:///dir/", "names no file"),
        ("sqlite:///b.sqlite3?synchronous=OFF", r"synchronous='OFF'.*FULL.*NORMAL"),
        ("sqlite:///b.sqlite3?lease=0", r"lease='0' must be a number >= 1"),
        ("sqlite:///b.sqlite3?fsync=1", r"unknown option\(s\) fsync; known: synchronous"),
        ("memory://", "needs a 'sqlite:///path' URL"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SqliteBroker(url)


def test_relative_and_absolute_paths() -> None:
    assert SqliteBroker("sqlite:///data/b.sqlite3").path == "data/b.sqlite3"
    assert SqliteBroker("sqlite:////srv/data/b.sqlite3").path == "/srv/data/b.sqlite3"
