"""Deliveries handed over in aiormq's connection reader (actorbus/brokers/amqp/_inline.py).

The first tests guard the aiormq internals the inline path relies on: they fail loudly when
an aiormq release changes them (then re-check _inline.py and move the pin in pyproject.toml).
They need no RabbitMQ; the tests marked ``amqp`` run the path end to end.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiormq.channel
import aiormq.connection
import pytest
from packaging.requirements import Requirement
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

import actorbus.brokers.amqp._consumer as consumer_module
from actorbus.brokers import XH_REASON, Topology
from actorbus.brokers.amqp import AmqpBroker
from actorbus.brokers.amqp._inline import InlineDeliveries, supported
from actorbus.testing._conformance import DeliveryCollector, drain, make_message

from ._helpers import declare_routed, eventually

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


# ------------------------------------------------------------------ aiormq internals (guard)


def test_installed_aiormq_is_within_the_pinned_range() -> None:
    deps = tomllib.loads(_PYPROJECT.read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if Requirement(d).name == "aiormq"]
    assert any(s.operator == "<" for s in pin.specifier), "pin an upper bound: see _inline.py"
    assert pin.specifier.contains(version("aiormq")), (
        f"aiormq {version('aiormq')} is outside {pin}: check actorbus/brokers/amqp/_inline.py "
        "against it, then move the pin"
    )


def test_aiormq_connection_reader_puts_each_frame_into_channel_frames() -> None:
    reader = inspect.getsource(aiormq.connection.Connection._Connection__reader)  # type: ignore[attr-defined]
    # The inline path replaces `put` on one channel's queue: the reader must look it up and
    # await it for every frame, with (weight, frame) items.
    assert re.search(r"await ch\.frames\.put\(\(weight, frame\)\)", reader), reader


def test_aiormq_channel_reads_frames_queue_and_keeps_consumers_by_tag() -> None:
    channel = aiormq.channel.Channel
    assert "self.frames.get()" in inspect.getsource(channel._get_frame)
    assert "self.consumers.get(frame.consumer_tag)" in inspect.getsource(channel._on_deliver_frame)
    assert "self.consumers.pop(" in inspect.getsource(channel._on_cancel_frame)
    consume = inspect.getsource(channel.basic_consume)
    assert "self.consumers[consumer_tag] =" in consume
    assert "consumer_tag" in inspect.signature(channel.basic_consume).parameters


# ------------------------------------------------------------------ the state machine


class _Channel(SimpleNamespace):
    frames: asyncio.Queue[tuple[int, Any]]
    consumers: dict[str, Any]


def _channel() -> Any:
    return _Channel(frames=asyncio.Queue(), consumers={})


def _deliver(tag: str = "ctag", n: int = 1) -> tuple[int, Basic.Deliver]:
    return (0, Basic.Deliver(tag, n, False, "x", "k"))


def _header(size: int, **props: Any) -> tuple[int, ContentHeader]:
    return (0, ContentHeader(0, size, Basic.Properties(**props)))


def _body(data: bytes) -> tuple[int, ContentBody]:
    return (0, ContentBody(data))


def _queued(channel: Any) -> list[Any]:
    out = []
    while not channel.frames.empty():
        out.append(channel.frames.get_nowait()[1])
    return out


def _hooked(channel: Any, tag: str = "ctag") -> tuple[InlineDeliveries, list[tuple[Any, ...]]]:
    got: list[tuple[Any, ...]] = []
    inline = InlineDeliveries(channel)
    inline.callbacks[tag] = lambda frame, props, body: got.append((frame, props, body))
    channel.consumers[tag] = object()
    return inline, got


@pytest.mark.anyio
async def test_assembles_deliveries_of_one_two_and_no_body_frames() -> None:
    channel = _channel()
    _, got = _hooked(channel)
    put = channel.frames.put
    for item in (_deliver(n=1), _header(3, message_id="a"), _body(b"abc")):
        await put(item)
    for item in (_deliver(n=2), _header(5), _body(b"ab"), _body(b"c"), _body(b"de")):
        await put(item)
    for item in (_deliver(n=3), _header(0)):
        await put(item)
    assert [(f.delivery_tag, b) for f, _, b in got] == [(1, b"abc"), (2, b"abcde"), (3, b"")]
    assert got[0][1].message_id == "a"
    assert _queued(channel) == []


@pytest.mark.anyio
async def test_other_frames_and_other_consumers_take_aiormqs_path() -> None:
    channel = _channel()
    inline, got = _hooked(channel)
    inline.callbacks["gone"] = lambda *_: got.append(("gone",))  # registered, then cancelled
    frames = [
        (0, Basic.ConsumeOk("ctag")),
        _deliver("someone-else"), _header(1), _body(b"x"),
        _deliver("gone"), _header(1), _body(b"y"),
        (0, Basic.CancelOk("ctag")),
    ]  # fmt: skip
    for item in frames:
        await channel.frames.put(item)
    assert got == []
    assert _queued(channel) == [frame for _, frame in frames]


@pytest.mark.anyio
async def test_an_unexpected_frame_mid_message_goes_to_aiormq_with_the_message() -> None:
    channel = _channel()
    _, got = _hooked(channel)
    frames = [_deliver(), _header(4), _body(b"ab"), (0, Basic.Deliver("ctag", 2))]
    for item in frames:
        await channel.frames.put(item)
    assert got == []
    assert _queued(channel) == [frame for _, frame in frames]  # aiormq's reader fails on it
    # and the next message is assembled again
    for item in (_deliver(n=3), _header(1), _body(b"z")):
        await channel.frames.put(item)
    assert [b for *_, b in got] == [b"z"]


def test_supported_needs_a_frame_queue_and_a_consumer_table() -> None:
    channel = _channel()
    assert supported(channel)
    InlineDeliveries(channel)
    assert not supported(channel)  # hooked once only
    assert not supported(SimpleNamespace(frames=asyncio.Queue()))
    assert not supported(SimpleNamespace(consumers={}))


# ------------------------------------------------------------------ end to end on RabbitMQ


@pytest.mark.amqp
@pytest.mark.anyio
async def test_deliveries_arrive_in_order_in_the_connection_reader(
    broker: AmqpBroker, unique: str
) -> None:
    exchange, spec = await declare_routed(broker, unique, retry_delays=(0.05,))
    readers: set[str] = set()
    collector = DeliveryCollector()

    def on_delivery(delivery: Any) -> None:
        task = asyncio.current_task()
        readers.add(task.get_coro().__qualname__ if task is not None else "")  # type: ignore[union-attr]
        collector(delivery)

    sub = await broker.consume(spec.name, on_delivery, prefetch=500)
    assert sub._inline is not None
    # An empty body, bodies of one frame, and one spanning several (frame_max is 128 KiB).
    bodies = [b""] + [b"%d" % i for i in range(200)] + [bytes(range(256)) * 1200]
    await broker.publish_batch([make_message(exchange, "order.x", b) for b in bodies])
    got = await collector.wait_for(len(bodies))
    assert [d.body for d in got] == bodies
    assert readers == {"Connection.__reader"}  # no task per delivery
    for delivery in got:
        await delivery.ack()
    await sub.cancel()
    await broker.publish(make_message(exchange, "order.after"))
    await eventually(lambda: _depth(broker, spec.name, 1), what="published after the cancel")
    assert len(collector) == len(bodies)


async def _depth(broker: AmqpBroker, queue: str, depth: int) -> bool:
    return await broker.queue_depth(queue) == depth


@pytest.mark.amqp
@pytest.mark.anyio
async def test_unreadable_delivery_is_dead_lettered_and_the_rest_flows(
    broker: AmqpBroker, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_delivery = consumer_module.make_delivery

    def flaky(frame: Any, props: Any, body: bytes, *args: Any) -> Any:
        if body == b"bad":
            raise ValueError("unreadable")
        return make_delivery(frame, props, body, *args)

    monkeypatch.setattr(consumer_module, "make_delivery", flaky)
    exchange, spec = await declare_routed(broker, unique, retry_delays=(0.05,))
    collector = DeliveryCollector()
    await broker.consume(spec.name, collector, prefetch=5)
    await broker.publish_batch([make_message(exchange, "order.x", b) for b in (b"1", b"bad", b"2")])
    got = await collector.wait_for(2)
    assert [d.body for d in got] == [b"1", b"2"]
    for delivery in got:
        await delivery.ack()
    await eventually(lambda: _depth(broker, spec.dlq_name, 1), what="rejected to the DLQ")
    await eventually(lambda: _depth(broker, spec.name, 0), what="nothing left unsettled")


@pytest.mark.amqp
@pytest.mark.anyio
async def test_failing_callback_requeues_and_oversized_is_dead_lettered(
    amqp_url: str, unique: str
) -> None:
    async with AmqpBroker(amqp_url, max_message_size=100) as broker:
        exchange, spec = await declare_routed(broker, unique, retry_delays=(0.05,))
        collector = DeliveryCollector()
        failed: list[bytes] = []

        def on_delivery(delivery: Any) -> None:
            if not failed:
                failed.append(delivery.body)
                raise RuntimeError("callback failed")
            collector(delivery)

        await broker.consume(spec.name, on_delivery, prefetch=5)
        await broker.publish(make_message(exchange, "order.x", b"first"))
        (again,) = await collector.wait_for(1)
        assert failed == [b"first"]
        assert again.body == b"first"
        assert again.envelope.redelivered
        await again.ack()
    async with AmqpBroker(amqp_url) as producer:
        await producer.publish(make_message(exchange, "order.big", b"x" * 101))
    async with AmqpBroker(amqp_url, max_message_size=100) as broker:
        await broker.declare(Topology(queues=(spec,)))
        collector = DeliveryCollector()
        await broker.consume(spec.name, collector, prefetch=5)
        await eventually(lambda: _depth(broker, spec.dlq_name, 1), what="too large")
        (dead,) = await drain(broker, spec.dlq_name)
        assert dead.envelope.headers[XH_REASON] == "message-too-large"
        # Deliveries keep their order: once a later message arrives, the big one never will.
        await broker.publish(make_message(exchange, "order.marker", b"marker"))
        (marker,) = await collector.wait_for(1)
        assert marker.body == b"marker"
        await marker.ack()
