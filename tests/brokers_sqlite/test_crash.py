"""Crashes and several processes: a consumer process killed with SIGKILL, a publisher killed
during its commits, two consumer processes competing for one queue."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import anyio
import pytest

from actorbus.brokers import Delivery, OutboundMessage, QueueSpec, Topology
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.messages import Envelope
from actorbus.testing._conformance import DeliveryCollector

from ._procs import child, wait_any

pytestmark = pytest.mark.anyio

QUEUE = "crash.queue"


def message(body: int) -> OutboundMessage:
    return OutboundMessage("", Envelope(uuid.uuid4().hex, "test", QUEUE), b"%d" % body)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.sqlite3'}"


async def setup(url: str, count: int) -> None:
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        await broker.publish_batch([message(i) for i in range(count)])


async def drain(url: str, count: int) -> list[Delivery]:
    """Consume ``count`` messages with a new connection, ack them, check nothing is left."""
    async with SqliteBroker(url) as broker, anyio.create_task_group() as tg:
        collector = DeliveryCollector(ack_in=tg, timeout=30)
        sub = await broker.consume(QUEUE, collector, prefetch=50)
        got = await collector.wait_for(count)
        await sub.cancel()
    async with SqliteBroker(url) as broker:
        assert await broker.queue_depth(QUEUE) == 0
        assert await broker.get(QUEUE) is None
    return got


async def test_killed_consumer_holding_deliveries_gets_them_redelivered(url: str) -> None:
    await setup(url, 30)
    async with anyio.create_task_group() as tg:
        async with child(tg, "hold", url, QUEUE, "10") as holder:
            await holder.wait(lambda: "holding" in holder.lines, "holding 10")
            await holder.kill()
        tg.cancel_scope.cancel()
    held = {line.split()[0] for line in holder.words("got")}
    assert len(held) == 10
    got = await drain(url, 30)
    by_body = {d.body.decode(): d for d in got}
    assert sorted(by_body, key=int) == [str(i) for i in range(30)], "none lost, none twice"
    for body, d in by_body.items():
        if body in held:
            assert d.envelope.redelivered, body
            assert d.envelope.attempt == 2, body
        else:
            assert not d.envelope.redelivered, body
            assert d.envelope.attempt == 1, body


@pytest.mark.parametrize("acks", ["confirmed", "async"])
async def test_consumer_killed_mid_stream_loses_nothing_and_acked_stay_acked(
    url: str, acks: str
) -> None:
    """With ``acks=confirmed`` an ack that returned is never redelivered; with ``acks=async``
    (the default) one not yet committed may be, once. Either way nothing is lost."""
    total = 300
    await setup(url, total)
    url = f"{url}?acks={acks}"
    async with anyio.create_task_group() as tg:
        async with child(tg, "consume", url, QUEUE) as consumer:
            await consumer.wait(lambda: len(consumer.words("acked")) >= 100, "100 acks")
            await consumer.kill()
        tg.cancel_scope.cancel()
    acked = set(consumer.words("acked"))
    seen = set(consumer.words("got"))
    # Delivered, ack not confirmed when it died (with async acks: every ack may be
    # unconfirmed): redelivered or not, either way is right.
    in_flight = seen - acked if acks == "confirmed" else seen
    async with SqliteBroker(url) as broker:
        remaining = await broker.queue_depth(QUEUE)
    got = await drain(url, remaining)
    again = {d.body.decode(): d for d in got}
    assert len(again) == len(got), "redelivered once each"
    if acks == "confirmed":
        assert not (set(again) & acked), "a confirmed ack is never redelivered"
    lost = {str(i) for i in range(total)} - acked - set(again)
    assert lost <= in_flight, f"lost {sorted(lost - in_flight)}"
    for body in set(again) & seen:
        assert again[body].envelope.redelivered, body
        assert again[body].envelope.attempt == 2, body


async def test_two_consumer_processes_share_a_queue(url: str) -> None:
    total = 400
    await setup(url, 0)
    async with anyio.create_task_group() as tg:
        async with child(tg, "consume", url, QUEUE) as one, child(tg, "consume", url, QUEUE) as two:
            await one.wait(lambda: "consuming" in one.lines, "consuming")
            await two.wait(lambda: "consuming" in two.lines, "consuming")
            async with SqliteBroker(url) as broker:
                for start in range(0, total, 20):
                    await broker.publish_batch([message(i) for i in range(start, start + 20)])

            def done() -> bool:
                return len(one.words("acked")) + len(two.words("acked")) >= total

            await wait_any((one, two), done, f"{total} acks across both")
            assert one.process.stdin is not None
            assert two.process.stdin is not None
            await one.process.stdin.aclose()
            await two.process.stdin.aclose()
            await one.process.wait()
            await two.process.wait()
        tg.cancel_scope.cancel()
    first, second = one.words("acked"), two.words("acked")
    assert first, "both processes must get work"
    assert second, "both processes must get work"
    assert sorted(first + second, key=int) == [str(i) for i in range(total)], "exactly all"
    assert one.process.returncode == 0
    assert two.process.returncode == 0


async def test_publisher_killed_during_commits_leaves_a_database_that_opens(url: str) -> None:
    await setup(url, 0)
    async with anyio.create_task_group() as tg:
        async with child(tg, "publish", url, QUEUE) as publisher:
            await publisher.wait(lambda: len(publisher.words("committed")) >= 20, "20 batches")
            await publisher.kill()
        tg.cancel_scope.cancel()
    confirmed = int(publisher.words("committed")[-1])
    path = url.removeprefix("sqlite:///")
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    async with SqliteBroker(url) as broker:
        depth = await broker.queue_depth(QUEUE)
    # Every confirmed batch is there; a batch in flight is there whole or not at all.
    assert depth >= confirmed
    assert depth % 20 == 0


async def test_a_consumer_in_another_process_is_woken_by_a_hint_not_the_poll(
    tmp_path: Path,
) -> None:
    # With a 60 s backstop poll, only the wake-up hint can deliver within the bounded wait.
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}?poll=60"
    await setup(url, 0)
    async with anyio.create_task_group() as tg:
        async with child(tg, "consume", url, QUEUE) as consumer:
            await consumer.wait(lambda: "consuming" in consumer.lines, "consuming")
            async with SqliteBroker(url) as broker:
                for i in range(5):
                    await broker.publish(message(i))
                    await consumer.wait(
                        lambda i=i: str(i) in consumer.words("acked"), f"ack {i}", within=10
                    )
        tg.cancel_scope.cancel()
