"""Deliveries handed over in aiormq's connection reader (actorbus/brokers/amqp/_inline.py).

The tests marked ``amqp`` check the behaviour on RabbitMQ: with the inline path, a delivery's
callback runs in aiormq's connection reader (no task per delivery); when the path is switched
off (``?inline=0``, ``ACTORBUS_AMQP_INLINE=0``) or refused because a channel is not shaped as
``_inline`` expects, aiormq's own consumer path runs it, and every message still arrives, in
order and whole. An aiormq release that changes what ``_inline`` relies on fails them; then
re-check _inline.py and move the pin in pyproject.toml. The other tests need no RabbitMQ.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiormq.channel
import pytest
from packaging.requirements import Requirement
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

import actorbus.brokers.amqp._consumer as consumer_module
from actorbus.brokers import XH_REASON, Delivery, Topology
from actorbus.brokers.amqp import AmqpBroker
from actorbus.brokers.amqp._connection import INLINE_ENV, parse_amqp_url
from actorbus.brokers.amqp._inline import InlineDeliveries, supported
from actorbus.exceptions import ConfigurationError
from actorbus.testing._conformance import DeliveryCollector, drain, make_message

from ._helpers import declare_routed, eventually

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

#: Tests that set the consumer path themselves (see conftest.py); the others run on both.
CHOOSES_CONSUMER_PATH = frozenset({
    "test_deliveries_are_assembled_in_the_connection_reader",
    "test_switched_off_deliveries_take_aiormqs_path",
    "test_a_channel_not_shaped_as_expected_takes_aiormqs_path",
})  # fmt: skip

#: The task that runs a delivery's callback on the inline path: aiormq's connection reader.
_READER = "Connection.__reader"
#: ... and on aiormq's own path: the consumer task aiormq starts for each delivery.
_AIORMQ_CONSUMER = "AmqpSubscription._consume_on.<locals>.on_message"


# ------------------------------------------------------------------ pins


def _pin(name: str) -> Requirement:
    deps = tomllib.loads(_PYPROJECT.read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in deps if Requirement(d).name == name]
    return pin


@pytest.mark.parametrize("name", ["aiormq", "pamqp"])
def test_installed_client_is_declared_and_within_the_pinned_range(name: str) -> None:
    pin = _pin(name)
    assert any(s.operator == "<" for s in pin.specifier), "pin an upper bound: see _inline.py"
    assert pin.specifier.contains(version(name)), (
        f"{name} {version(name)} is outside {pin}: check actorbus/brokers/amqp/_inline.py "
        "against it, then move the pin"
    )


# ------------------------------------------------------------------ the switch


def _inline_option(url: str) -> bool:
    return parse_amqp_url(url)[1].inline


def test_inline_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INLINE_ENV, raising=False)
    assert _inline_option("amqp://h/")


@pytest.mark.parametrize(("query", "env", "expected"), [
    ("?inline=0", None, False),
    ("?inline=false", None, False),
    ("?heartbeat=5&inline=off", None, False),
    ("", "0", False),
    ("", "no", False),
    ("", "1", True),
    ("", "", True),
    ("?inline=1", "0", True),  # the URL wins over the environment
    ("?inline=0", "1", False),
])  # fmt: skip
def test_inline_switch_from_url_and_environment(
    query: str, env: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv(INLINE_ENV, raising=False)
    else:
        monkeypatch.setenv(INLINE_ENV, env)
    assert _inline_option(f"amqp://guest:secret@h/{query}") is expected


def test_a_bad_inline_switch_says_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INLINE_ENV, raising=False)
    bad_url = r"option inline= of broker URL '.*\*\*\*.*' is 'maybe'; expected 1 .* or 0"
    with pytest.raises(ConfigurationError, match=bad_url):
        AmqpBroker("amqp://guest:secret@h/?inline=maybe")
    monkeypatch.setenv(INLINE_ENV, "2")
    bad_env = r"environment variable ACTORBUS_AMQP_INLINE is '2'; expected 1 .* or 0"
    with pytest.raises(ConfigurationError, match=bad_env):
        AmqpBroker("amqp://h/")


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
    assert not supported(SimpleNamespace(frames=_OtherQueue(), consumers={}))
    assert not supported(SimpleNamespace(frames=asyncio.Queue(), consumers=_ConsumerTable({})))


# ------------------------------------------------------------------ end to end on RabbitMQ


def _with_query(url: str, option: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{option}"


def _bodies() -> list[bytes]:
    """An empty body, bodies of one frame, and one spanning several (frame_max is 128 KiB)."""
    return [b""] + [b"%d" % i for i in range(200)] + [bytes(range(256)) * 1200]


async def _consume_in_order(broker: AmqpBroker, unique: str) -> set[str]:
    """Publish :func:`_bodies`, check they arrive whole and in order; return the callers' tasks.

    After a cancel nothing more arrives.
    """
    exchange, spec = await declare_routed(broker, unique, retry_delays=(0.05,))
    tasks: set[str] = set()
    collector = DeliveryCollector()

    def on_delivery(delivery: Delivery) -> None:
        task = asyncio.current_task()
        tasks.add(task.get_coro().__qualname__ if task is not None else "")  # type: ignore[union-attr]
        collector(delivery)

    sub = await broker.consume(spec.name, on_delivery, prefetch=500)
    bodies = _bodies()
    await broker.publish_batch([make_message(exchange, "order.x", b) for b in bodies])
    got = await collector.wait_for(len(bodies))
    assert [d.body for d in got] == bodies
    for delivery in got:
        await delivery.ack()
    await sub.cancel()
    await broker.publish(make_message(exchange, "order.after"))
    await eventually(lambda: _depth(broker, spec.name, 1), what="published after the cancel")
    assert len(collector) == len(bodies)
    return tasks


@pytest.mark.amqp
@pytest.mark.anyio
async def test_deliveries_are_assembled_in_the_connection_reader(
    amqp_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INLINE_ENV, raising=False)
    async with AmqpBroker(amqp_url) as broker:
        tasks = await _consume_in_order(broker, unique)
    assert tasks == {_READER}  # no task per delivery


@pytest.mark.amqp
@pytest.mark.anyio
@pytest.mark.parametrize("how", ["url", "env"])
async def test_switched_off_deliveries_take_aiormqs_path(
    amqp_url: str, unique: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "url":
        monkeypatch.setenv(INLINE_ENV, "1")
        url = _with_query(amqp_url, "inline=0")
    else:
        monkeypatch.setenv(INLINE_ENV, "0")
        url = amqp_url
    async with AmqpBroker(url) as broker:
        tasks = await _consume_in_order(broker, unique)
    assert tasks == {_AIORMQ_CONSUMER}


class _OtherQueue(asyncio.Queue):  # type: ignore[type-arg]
    """What a changed aiormq might put frames in: a queue of its own."""


@pytest.mark.amqp
@pytest.mark.anyio
@pytest.mark.parametrize("change", ["frame queue", "consumer table"])
async def test_a_channel_not_shaped_as_expected_takes_aiormqs_path(
    amqp_url: str, unique: str, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    monkeypatch.delenv(INLINE_ENV, raising=False)
    init: Callable[..., None] = aiormq.channel.Channel.__init__
    refused: list[bool] = []

    def changed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if change == "frame queue":
            self.frames = _OtherQueue(maxsize=self.frames.maxsize)
        else:
            self.consumers = _ConsumerTable(self.consumers)
        refused.append(not supported(self))

    monkeypatch.setattr(aiormq.channel.Channel, "__init__", changed_init)
    async with AmqpBroker(amqp_url) as broker:
        tasks = await _consume_in_order(broker, unique)
    assert refused
    assert all(refused)
    assert tasks == {_AIORMQ_CONSUMER}


class _ConsumerTable:
    """A consumer table that is not a dict, as a changed aiormq might keep one."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


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

    monkeypatch.setattr(consumer_module, "make_delivery", flaky)  # what the consumer calls
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
