"""What the conformance suite does not pin but ``memory://`` does: max_length,
delivery_limit, single active consumer, retries that wait on disk across a restart, and the
URL's options."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from actorbus.brokers import XH_REASON, OutboundMessage, QueueSpec, Topology, connect
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.brokers.sqlite._db import ACK, Op, Outcome
from actorbus.exceptions import BrokerError, ConfigurationError
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


async def test_an_async_ack_is_committed_with_the_next_batch_and_at_close(url: str) -> None:
    async with SqliteBroker(url) as broker:
        assert not broker.confirm_acks
        await broker.declare(Topology(queues=(QueueSpec(Q),)))
        await broker.publish_batch([message(b"0"), message(b"1")])
        first, second = await broker.get(Q), await broker.get(Q)
        assert first is not None
        assert second is not None
        await first.ack()
        assert await broker.queue_depth(Q) == 0  # a later operation: the ack ran before it
        await second.ack()  # committed by closing (before the release of what is held)
    async with SqliteBroker(url) as broker:
        assert await broker.get(Q) is None, "an ack that returned before close is kept"


async def test_an_async_ack_runs_again_after_a_failed_transaction(url: str) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(Q),)))
        await broker.publish(message(b"once"))
        d = await broker.get(Q)
        assert d is not None
        run = broker._db.run
        failed: list[int] = []

        def fail_once(ops: list[Op]) -> Outcome:
            if not failed and any(op.kind == ACK for op in ops):
                failed.append(len(ops))
                raise BrokerError("sqlite broker file: simulated full disk")
            return run(ops)

        broker._db.run = fail_once  # type: ignore[method-assign]
        await d.ack()
        errors: list[str] = []
        while True:  # the first batch holding the ack fails (maybe with this read in it)
            try:
                depth = await broker.queue_depth(Q)
            except BrokerError as exc:
                errors.append(str(exc))
                continue
            break
        assert all("simulated" in error for error in errors)
        assert failed, "the ack's transaction failed once"
        assert depth == 0
    async with SqliteBroker(url) as broker:
        assert await broker.get(Q) is None, "the ack was committed, not released"


async def test_confirmed_acks_return_after_their_commit(url: str) -> None:
    async with SqliteBroker(f"{url}?acks=confirmed") as one, SqliteBroker(url) as two:
        assert one.confirm_acks
        await one.declare(Topology(queues=(QueueSpec(Q),)))
        await one.publish(message(b"x"))
        d = await one.get(Q)
        assert d is not None
        run = one._db.run
        acked: list[bool] = []

        def watch(ops: list[Op]) -> Outcome:
            outcome = run(ops)
            acked.extend(op.result for op in ops if op.kind == ACK)
            return outcome

        one._db.run = watch  # type: ignore[method-assign]
        await d.ack()
        assert acked == [True], "ack() returned only once its transaction committed"
        assert await two.queue_depth(Q) == 0


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sqlite://", "names no file"),
        ("sqlite:///dir/", "names no file"),
        ("sqlite:///b.sqlite3?synchronous=OFF", r"synchronous='OFF'.*FULL.*NORMAL"),
        ("sqlite:///b.sqlite3?lease=0", r"lease='0' must be a number >= 1"),
        ("sqlite:///b.sqlite3?fsync=1", r"unknown option\(s\) fsync; known: synchronous"),
        ("sqlite:///b.sqlite3?acks=later", r"acks='later'.*async.*confirmed"),
        ("memory://", "needs a 'sqlite:///path' URL"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SqliteBroker(url)


def test_relative_and_absolute_paths() -> None:
    assert SqliteBroker("sqlite:///data/b.sqlite3").path == "data/b.sqlite3"
    assert SqliteBroker("sqlite:////srv/data/b.sqlite3").path == "/srv/data/b.sqlite3"
