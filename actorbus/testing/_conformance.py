"""The broker conformance suite: the behaviour every actorbus broker must show.

Written once, run against every broker: the memory broker, the AMQP broker on RabbitMQ, and
any third-party broker. Subclass :class:`BrokerConformance` in a module collected by pytest
and return an un-entered broker from ``make_broker``::

    from actorbus.testing import BrokerConformance

    class TestKafkaBroker(BrokerConformance):
        def make_broker(self) -> Broker:
            return KafkaBroker("kafka://localhost:9092")

Every test declares its own exchanges and queues, named after :attr:`BrokerConformance.unique`
(a fresh prefix per test), so tests sharing one server never see each other's messages.
Some tests open two brokers at once (two connections to the same server): ``make_broker``
must return brokers that share state, as two connections to one RabbitMQ node do (for the
memory broker: the same ``memory://<name>`` URL).

The building blocks (:class:`DeliveryCollector`, :func:`make_message`, :func:`wait_until`,
:func:`drain`) are plain async helpers, usable without pytest. Nothing waits a fixed time:
every wait is for an event or a probe, bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from ..brokers import (
    DEFAULT_EXCHANGE,
    XH_ATTEMPT,
    XH_ERROR_TYPE,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Binding,
    Broker,
    Delivery,
    ExchangeSpec,
    ExchangeType,
    OutboundMessage,
    QueueSpec,
    Subscription,
    Topology,
)
from ..exceptions import QueueNotFoundError, TopologyError, UnroutableError
from ..messages import Envelope

__all__ = (
    "BrokerConformance",
    "DeliveryCollector",
    "drain",
    "make_envelope",
    "make_message",
    "wait_until",
)

#: Seconds any single wait in the suite may take before the test fails.
DEFAULT_TIMEOUT = 10.0


def make_envelope(routing_key: str, **fields: Any) -> Envelope:
    """Return an envelope with a fresh ``message_id`` and ``type`` = ``routing_key``.

    Args:
        routing_key: The routing key (and wire type) of the message.
        **fields: Any other :class:`Envelope` keyword (``correlation_id``, ``headers``, …).
    """
    fields.setdefault("message_id", uuid.uuid4().hex)
    fields.setdefault("type", routing_key)
    message_id = fields.pop("message_id")
    type_ = fields.pop("type")
    return Envelope(message_id, type_, routing_key, **fields)


def make_message(
    exchange: str,
    routing_key: str,
    body: bytes = b"{}",
    *,
    mandatory: bool = True,
    **fields: Any,
) -> OutboundMessage:
    """Return a message to publish to ``exchange`` with ``routing_key``.

    Args:
        exchange: The exchange; ``""`` for the default exchange (routing by queue name).
        routing_key: The routing key.
        body: The payload.
        mandatory: Fail with ``UnroutableError`` if no queue receives it.
        **fields: Passed to :func:`make_envelope`.
    """
    return OutboundMessage(
        exchange, make_envelope(routing_key, **fields), body, mandatory=mandatory
    )


async def wait_until(
    probe: Callable[[], Awaitable[bool] | bool],
    *,
    within: float = DEFAULT_TIMEOUT,
    what: str = "condition",
) -> None:
    """Wait until ``probe()`` is true, checking again after each short yield.

    For broker state that is only observable by asking (e.g. ``queue_depth`` on a remote
    broker); prefer :class:`DeliveryCollector` waits where a callback exists.

    Args:
        probe: Returns (or awaits to) whether the condition holds.
        within: Seconds to wait before failing.
        what: Names the condition in the failure message.

    Raises:
        AssertionError: Still false after ``within`` seconds; names ``what``.
    """
    with anyio.move_on_after(within):
        while True:
            result = probe()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.005)
    raise AssertionError(f"timed out after {within:g} s waiting for {what}")


async def drain(broker: Broker, queue: str, *, limit: int = 10_000) -> list[Delivery]:
    """Take (``get``) and ack every ready message of ``queue``; return them in order."""
    taken: list[Delivery] = []
    while len(taken) < limit:
        delivery = await broker.get(queue)
        if delivery is None:
            break
        await delivery.ack()
        taken.append(delivery)
    return taken


def _active(subscription: Subscription) -> bool:
    # A call, so that type checkers do not narrow ``active`` across awaits.
    return subscription.active


class DeliveryCollector:
    """A delivery callback that records deliveries; await :meth:`wait_for` a count.

    Args:
        ack_in: A task group to ack every delivery in as it arrives (a task per delivery:
            a test helper, not a pattern for production consumers). ``None`` leaves them
            unsettled.
        timeout: Default timeout of :meth:`wait_for`.
    """

    def __init__(self, *, ack_in: TaskGroup | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.deliveries: list[Delivery] = []
        self._ack_in = ack_in
        self._timeout = timeout
        self._waiters: list[tuple[int, anyio.Event]] = []

    def __call__(self, delivery: Delivery) -> None:
        """Record one delivery (the broker calls this)."""
        self.deliveries.append(delivery)
        if self._ack_in is not None:
            self._ack_in.start_soon(delivery.ack)
        count = len(self.deliveries)
        for wanted, event in self._waiters:
            if count >= wanted:
                event.set()

    def __len__(self) -> int:
        return len(self.deliveries)

    @property
    def message_ids(self) -> list[str]:
        """The ``message_id`` of every delivery so far, in order."""
        return [d.envelope.message_id for d in self.deliveries]

    async def wait_for(self, count: int, *, within: float | None = None) -> list[Delivery]:
        """Wait until at least ``count`` deliveries arrived; return the first ``count``.

        Args:
            count: How many deliveries to wait for, in total.
            within: Seconds to wait; the collector's ``timeout`` by default.

        Raises:
            AssertionError: Fewer arrived in time.
        """
        limit = self._timeout if within is None else within
        if len(self.deliveries) < count:
            event = anyio.Event()
            entry = (count, event)
            self._waiters.append(entry)
            try:
                with anyio.move_on_after(limit):
                    await event.wait()
            finally:
                self._waiters.remove(entry)
        if len(self.deliveries) < count:
            raise AssertionError(
                f"expected {count} deliveries within {limit:g} s, got {len(self.deliveries)}"
            )
        return self.deliveries[:count]


class BrokerConformance:
    """Pytest base class: subclass it as ``Test…`` and implement :meth:`make_broker`.

    Attributes:
        name_prefix: Start of every exchange and queue name the suite declares.
        timeout: Seconds any single wait may take.
        unique: A fresh prefix per test (``<name_prefix>.<random>``), set before each test.
    """

    pytestmark = pytest.mark.anyio

    name_prefix: str = "conformance"
    timeout: float = DEFAULT_TIMEOUT
    unique: str

    @pytest.fixture(autouse=True)
    def _conformance_unique(self) -> None:
        self.unique = f"{self.name_prefix}.{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------- hooks

    def make_broker(self) -> Broker | Awaitable[Broker]:
        """Return a new, un-entered broker (may be ``async def``).

        Two brokers made in the same test must reach the same server (two connections).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_broker() returning an un-entered broker"
        )

    # ----------------------------------------------------------------- helpers

    def name(self, suffix: str) -> str:
        """Return a name unique to this test: ``<unique>.<suffix>``."""
        return f"{self.unique}.{suffix}"

    @contextlib.asynccontextmanager
    async def open_broker(self) -> AsyncIterator[Broker]:
        """Make a broker with :meth:`make_broker` and enter it for the ``async with`` body."""
        made = self.make_broker()
        broker = await made if inspect.isawaitable(made) else made
        async with broker:
            yield broker

    def queue_spec(self, suffix: str = "q", **options: Any) -> QueueSpec:
        """Return a non-durable queue spec named after this test, 50 ms retry tier."""
        options.setdefault("durable", False)
        options.setdefault("retry_delays", (0.05,))
        return QueueSpec(self.name(suffix), **options)

    async def declare_routed(
        self,
        broker: Broker,
        bindings: dict[str, tuple[str, ...]],
        *,
        exchange_type: ExchangeType = "topic",
    ) -> tuple[str, dict[str, str]]:
        """Declare one exchange and a queue per key of ``bindings`` bound with its patterns.

        Returns:
            The exchange name, and each suffix's full queue name.
        """
        exchange = self.name(exchange_type)
        queues = {suffix: self.queue_spec(suffix) for suffix in bindings}
        await broker.declare(
            Topology(
                exchanges=(ExchangeSpec(exchange, exchange_type, durable=False),),
                queues=tuple(queues.values()),
                bindings=tuple(
                    Binding(exchange, queues[suffix].name, pattern)
                    for suffix, patterns in bindings.items()
                    for pattern in patterns
                ),
            )
        )
        return exchange, {suffix: spec.name for suffix, spec in queues.items()}

    async def wait_depth(self, broker: Broker, queue: str, depth: int) -> None:
        """Wait until ``queue`` holds exactly ``depth`` ready messages."""

        async def probe() -> bool:
            return await broker.queue_depth(queue) == depth

        await wait_until(probe, within=self.timeout, what=f"{queue!r} to hold {depth} messages")

    # ---------------------------------------------------------------- topology

    async def test_declare_is_idempotent(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("a.b",)})
            await self.declare_routed(broker, {"q": ("a.b",)})
            await broker.publish(make_message(exchange, "a.b"))
            await self.wait_depth(broker, queues["q"], 1)

    async def test_redeclare_queue_with_other_arguments_fails(self) -> None:
        async with self.open_broker() as broker:
            spec = self.queue_spec("q", max_length=10)
            await broker.declare(Topology(queues=(spec,)))
            clash = self.queue_spec("q", max_length=20)
            with pytest.raises(TopologyError, match=spec.name.replace(".", r"\.")):
                await broker.declare(Topology(queues=(clash,)))

    async def test_consume_unknown_queue_raises(self) -> None:
        async with self.open_broker() as broker:
            missing = self.name("missing")
            with pytest.raises(QueueNotFoundError, match=missing.replace(".", r"\.")):
                await broker.consume(missing, DeliveryCollector(), prefetch=1)

    # ------------------------------------------------------------------ routing

    async def test_publish_consume_ack(self) -> None:
        async with self.open_broker() as broker, anyio.create_task_group() as tg:
            exchange, queues = await self.declare_routed(broker, {"q": ("order.created",)})
            collector = DeliveryCollector(ack_in=tg, timeout=self.timeout)
            sub = await broker.consume(queues["q"], collector, prefetch=10)
            assert sub.queue == queues["q"]
            assert _active(sub)
            sent = [make_message(exchange, "order.created", b"%d" % i) for i in range(3)]
            for message in sent:
                await broker.publish(message)
            got = await collector.wait_for(3)
            assert [d.body for d in got] == [b"0", b"1", b"2"]
            assert all(d.queue == queues["q"] and d.exchange == exchange for d in got)
            assert all(not d.envelope.redelivered and d.envelope.attempt == 1 for d in got)
            await sub.cancel()
            assert not _active(sub)
            await self.wait_depth(broker, queues["q"], 0)

    async def test_topic_wildcards(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(
                broker,
                {
                    "star": ("order.*",),
                    "hash": ("order.#",),
                    "exact": ("order.created",),
                    "all": ("#",),
                    "middle": ("*.created.#",),
                },
            )
            keys = ["order", "order.created", "order.created.v2", "stock.reserved"]
            for key in keys:
                await broker.publish(make_message(exchange, key))
            expected = {
                "star": ["order.created"],
                "hash": ["order", "order.created", "order.created.v2"],
                "exact": ["order.created"],
                "all": keys,
                "middle": ["order.created", "order.created.v2"],
            }
            for suffix, routed in expected.items():
                await self.wait_depth(broker, queues[suffix], len(routed))
                got = [d.envelope.routing_key for d in await drain(broker, queues[suffix])]
                assert got == routed, suffix

    async def test_fanout_to_two_queues(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(
                broker, {"a": ("",), "b": ("ignored",)}, exchange_type="fanout"
            )
            message = make_message(exchange, "any.key")
            await broker.publish(message)
            for queue in queues.values():
                await self.wait_depth(broker, queue, 1)
                (got,) = await drain(broker, queue)
                assert got.envelope.message_id == message.envelope.message_id

    async def test_direct_exchange_matches_keys_literally(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(
                broker, {"q": ("a.b", "x.*")}, exchange_type="direct"
            )
            await broker.publish(make_message(exchange, "a.b"))
            await broker.publish(make_message(exchange, "x.y", mandatory=False))
            await broker.publish(make_message(exchange, "x.*"))
            await self.wait_depth(broker, queues["q"], 2)
            got = [d.envelope.routing_key for d in await drain(broker, queues["q"])]
            assert got == ["a.b", "x.*"]

    async def test_default_exchange_routes_by_queue_name(self) -> None:
        async with self.open_broker() as broker:
            spec = self.queue_spec("commands")
            await broker.declare(Topology(queues=(spec,)))
            message = make_message(DEFAULT_EXCHANGE, spec.name, b"cmd", type="reserve.stock")
            await broker.publish(message)
            await self.wait_depth(broker, spec.name, 1)
            (got,) = await drain(broker, spec.name)
            assert got.body == b"cmd"
            assert got.envelope.type == "reserve.stock"

    async def test_unroutable_mandatory_raises(self) -> None:
        async with self.open_broker() as broker:
            exchange, _ = await self.declare_routed(broker, {"q": ("bound.key",)})
            with pytest.raises(UnroutableError, match=r"nobody\.listens"):
                await broker.publish(make_message(exchange, "nobody.listens"))
            await broker.publish(make_message(exchange, "nobody.listens", mandatory=False))
            missing_queue = self.name("no-such-queue")
            with pytest.raises(UnroutableError):
                await broker.publish(make_message(DEFAULT_EXCHANGE, missing_queue))

    # ---------------------------------------------------------------- consumers

    async def test_competing_consumers_share_work(self) -> None:
        async with self.open_broker() as broker, anyio.create_task_group() as tg:
            exchange, queues = await self.declare_routed(broker, {"q": ("work",)})
            first = DeliveryCollector(ack_in=tg, timeout=self.timeout)
            second = DeliveryCollector(ack_in=tg, timeout=self.timeout)
            sub1 = await broker.consume(queues["q"], first, prefetch=1)
            sub2 = await broker.consume(queues["q"], second, prefetch=1)
            sent = [make_message(exchange, "work") for _ in range(20)]
            for message in sent:
                await broker.publish(message)
            await wait_until(
                lambda: len(first) + len(second) >= 20,
                within=self.timeout,
                what="20 deliveries across both consumers",
            )
            ids = first.message_ids + second.message_ids
            assert sorted(ids) == sorted(m.envelope.message_id for m in sent)
            assert first.deliveries, "both consumers must get work"
            assert second.deliveries, "both consumers must get work"
            await sub1.cancel()
            await sub2.cancel()

    async def test_prefetch_bounds_unsettled_deliveries(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            collector = DeliveryCollector(timeout=self.timeout)
            await broker.consume(queues["q"], collector, prefetch=2)
            for i in range(3):
                await broker.publish(make_message(exchange, "k", b"%d" % i))
            first_two = await collector.wait_for(2)
            await self.wait_depth(broker, queues["q"], 1)
            assert len(collector) == 2, "prefetch=2 must hold back the third message"
            await first_two[0].ack()
            third = (await collector.wait_for(3))[2]
            assert third.body == b"2"
            for delivery in collector.deliveries[1:]:
                await delivery.ack()

    async def test_nack_requeue_redelivers(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            collector = DeliveryCollector(timeout=self.timeout)
            await broker.consume(queues["q"], collector, prefetch=1)
            message = make_message(exchange, "k", b"again")
            await broker.publish(message)
            (first,) = await collector.wait_for(1)
            assert not first.envelope.redelivered
            await first.nack(requeue=True)
            second = (await collector.wait_for(2))[1]
            assert second.envelope.message_id == message.envelope.message_id
            assert second.envelope.redelivered
            assert second.body == b"again"
            await second.ack()

    async def test_retry_comes_back_later_as_next_attempt(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            collector = DeliveryCollector(timeout=self.timeout)
            await broker.consume(queues["q"], collector, prefetch=5)
            message = make_message(exchange, "k", b"later", headers={"keep": "me"})
            await broker.publish(message)
            (first,) = await collector.wait_for(1)
            assert first.envelope.attempt == 1
            await first.retry(0.05, {"x-conformance-note": "retried"})
            # Settled at once, and waiting at the broker rather than ready in the queue.
            assert len(collector) == 1
            assert await broker.queue_depth(queues["q"]) == 0
            second = (await collector.wait_for(2))[1]
            assert second.envelope.message_id == message.envelope.message_id
            assert second.body == b"later"
            assert second.envelope.attempt == 2
            headers = second.envelope.headers
            assert headers[XH_ATTEMPT] == 2
            assert headers["x-conformance-note"] == "retried"
            assert headers["keep"] == "me"
            await second.ack()

    async def test_dead_letter_moves_to_dlq_with_origin(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("order.created",)})
            collector = DeliveryCollector(timeout=self.timeout)
            await broker.consume(queues["q"], collector, prefetch=1)
            message = make_message(exchange, "order.created", b"poison")
            await broker.publish(message)
            (delivery,) = await collector.wait_for(1)
            await delivery.dead_letter({XH_REASON: "handler-error", XH_ERROR_TYPE: "ValueError"})
            dlq = f"{queues['q']}.dlq"
            await self.wait_depth(broker, dlq, 1)
            (dead,) = await drain(broker, dlq)
            assert dead.envelope.message_id == message.envelope.message_id
            assert dead.body == b"poison"
            headers = dead.envelope.headers
            assert headers[XH_REASON] == "handler-error"
            assert headers[XH_ERROR_TYPE] == "ValueError"
            assert headers[XH_ORIGINAL_EXCHANGE] == exchange
            assert headers[XH_ORIGINAL_ROUTING_KEY] == "order.created"
            assert headers[XH_ORIGINAL_QUEUE] == queues["q"]
            assert await broker.queue_depth(queues["q"]) == 0

    async def test_nack_without_requeue_dead_letters(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            message = make_message(exchange, "k", b"rejected")
            await broker.publish(message)
            await self.wait_depth(broker, queues["q"], 1)
            delivery = await broker.get(queues["q"])
            assert delivery is not None
            await delivery.nack(requeue=False)
            dlq = f"{queues['q']}.dlq"
            await self.wait_depth(broker, dlq, 1)
            (dead,) = await drain(broker, dlq)
            assert dead.envelope.message_id == message.envelope.message_id
            assert await broker.queue_depth(queues["q"]) == 0

    async def test_settling_twice_is_harmless(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            for _ in range(2):
                await broker.publish(make_message(exchange, "k"))
            await self.wait_depth(broker, queues["q"], 2)
            acked = await broker.get(queues["q"])
            nacked = await broker.get(queues["q"])
            assert acked is not None
            assert nacked is not None
            await acked.ack()
            await acked.ack()
            await acked.nack(requeue=True)
            await acked.dead_letter({XH_REASON: "late"})
            await nacked.nack(requeue=False)
            await nacked.nack(requeue=True)
            await nacked.ack()
            await nacked.retry(0.0)
            assert await broker.queue_depth(queues["q"]) == 0
            await self.wait_depth(broker, f"{queues['q']}.dlq", 1)
            assert await broker.get(queues["q"]) is None

    async def test_cancelled_subscription_keeps_in_flight_settleable(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            first_sub = DeliveryCollector(timeout=self.timeout)
            sub = await broker.consume(queues["q"], first_sub, prefetch=1)
            for i in range(2):
                await broker.publish(make_message(exchange, "k", b"%d" % i))
            (in_flight,) = await first_sub.wait_for(1)
            await sub.cancel()
            await in_flight.ack()
            second_sub = DeliveryCollector(timeout=self.timeout)
            await broker.consume(queues["q"], second_sub, prefetch=5)
            (next_one,) = await second_sub.wait_for(1)
            assert next_one.body == b"1"
            assert not next_one.envelope.redelivered
            await next_one.ack()
            await self.wait_depth(broker, queues["q"], 0)

    async def test_closing_requeues_unsettled_deliveries(self) -> None:
        async with self.open_broker() as observer:
            exchange, queues = await self.declare_routed(observer, {"q": ("k",)})
            sent = [make_message(exchange, "k", b"%d" % i) for i in range(2)]
            async with self.open_broker() as closing:
                collector = DeliveryCollector(timeout=self.timeout)
                await closing.consume(queues["q"], collector, prefetch=10)
                for message in sent:
                    await closing.publish(message)
                await collector.wait_for(2)
            # The closing connection left both unsettled: they are back in the queue.
            again = DeliveryCollector(timeout=self.timeout)
            await observer.consume(queues["q"], again, prefetch=10)
            got = await again.wait_for(2)
            assert sorted(d.envelope.message_id for d in got) == sorted(
                m.envelope.message_id for m in sent
            )
            assert all(d.envelope.redelivered for d in got)
            for delivery in got:
                await delivery.ack()

    # ---------------------------------------------------------- publish, envelope

    async def test_publish_batch_delivers_all(self) -> None:
        async with self.open_broker() as broker, anyio.create_task_group() as tg:
            exchange, queues = await self.declare_routed(broker, {"q": ("batch.#",)})
            collector = DeliveryCollector(ack_in=tg, timeout=self.timeout)
            await broker.consume(queues["q"], collector, prefetch=100)
            sent = [make_message(exchange, f"batch.{i % 7}", b"%d" % i) for i in range(500)]
            await broker.publish_batch(sent)
            await collector.wait_for(500)
            assert sorted(collector.message_ids) == sorted(m.envelope.message_id for m in sent)

    async def test_envelope_round_trip(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("order.created",)})
            message = make_message(
                exchange,
                "order.created",
                b'{"orderId": "o-1"}',
                type="order.created",
                correlation_id="o-1",
                causation_id="cause-7",
                reply_to=self.name("replies"),
                content_type="application/json",
                headers={"schema-version": 2, "trace": "abc", "count": -3},
                timestamp=1_700_000_000.0,
            )
            await broker.publish(message)
            await self.wait_depth(broker, queues["q"], 1)
            (got,) = await drain(broker, queues["q"])
            env, sent = got.envelope, message.envelope
            assert got.body == message.body
            assert env.message_id == sent.message_id
            assert env.type == "order.created"
            assert env.routing_key == "order.created"
            assert env.correlation_id == "o-1"
            assert env.causation_id == "cause-7"
            assert env.reply_to == sent.reply_to
            assert env.content_type == "application/json"
            assert env.headers["schema-version"] == 2
            assert env.headers["trace"] == "abc"
            assert env.headers["count"] == -3
            assert env.timestamp is not None
            assert abs(env.timestamp - 1_700_000_000.0) < 1.0
            assert not env.redelivered
            assert env.attempt == 1

    async def test_get_queue_depth_and_purge(self) -> None:
        async with self.open_broker() as broker:
            exchange, queues = await self.declare_routed(broker, {"q": ("k",)})
            queue = queues["q"]
            assert await broker.get(queue) is None
            for i in range(3):
                await broker.publish(make_message(exchange, "k", b"%d" % i))
            await self.wait_depth(broker, queue, 3)
            first = await broker.get(queue)
            assert first is not None
            assert first.body == b"0"
            assert first.queue == queue
            assert await broker.queue_depth(queue) == 2
            await first.nack(requeue=True)
            await self.wait_depth(broker, queue, 3)
            assert await broker.purge(queue) == 3
            assert await broker.queue_depth(queue) == 0
            assert await broker.get(queue) is None

    async def test_is_ready_while_entered(self) -> None:
        async with self.open_broker() as broker:
            _, queues = await self.declare_routed(broker, {"q": ("k",)})
            sub = await broker.consume(queues["q"], DeliveryCollector(), prefetch=1)
            assert broker.is_ready
            assert sub.active
            assert "***" in broker.url or "@" not in broker.url
        assert not broker.is_ready
