"""App and pipeline semantics on the in-process broker: flush-then-ack, retries, DLQ, inbox."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
import pytest

from actorbus import App, Command, Event, HandlerContext, RejectMessage, RetryPolicy, Service
from actorbus.brokers import (
    DEFAULT_EXCHANGE,
    XH_ATTEMPTS,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Binding,
    OutboundMessage,
    QueueSpec,
    Topology,
)
from actorbus.exceptions import ConfigurationError
from actorbus.messages import Envelope
from actorbus.runtime import Backoff

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(
    max_attempts=3, backoff=Backoff(initial=0.001, factor=1.0, maximum=0.001, jitter=0)
)
TIERS = (0.001,)


class OrderPlaced(Event, routing_key="test.order.placed", version=1):
    order_id: str
    qty: int


class OrderAccepted(Event, routing_key="test.order.accepted", version=1):
    order_id: str


class Reserve(Command, routing_key="test.reserve", version=1):
    order_id: str


class Reserved(Event, routing_key="test.reserved", version=1):
    order_id: str


class Probe:
    """Collects what handlers saw and lets a test await a count."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> list[Any]:
        with anyio.fail_after(5):
            while len(self.items) < count:
                await self._changed.wait()
        return self.items


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.amqp)])
def broker(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the in-process broker and on a real RabbitMQ."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("amqp_url")
    return url


@pytest.fixture
def ns() -> str:
    """A token that keeps this test's exchange and queues apart on a shared RabbitMQ."""
    return uuid.uuid4().hex[:8]


def _service(ns: str, name: str, **kw: Any) -> Service:
    return Service(
        f"{name}-{ns}",
        exchange=f"test.{ns}",
        command_exchange=f"commands.{ns}",
        retry=FAST,
        retry_delays=TIERS,
        **kw,
    )


async def _dlq_message(app: App, queue: str) -> Any:
    return await _get(app, f"{queue}.dlq")


async def test_handler_publish_is_flushed_then_consumed_downstream(
    tmp_path: Any, broker: str, ns: str
) -> None:
    seen = Probe()
    orders, audit = _service(ns, "orders"), _service(ns, "audit")

    @orders.on(OrderPlaced)
    async def accept(event: OrderPlaced, ctx: HandlerContext) -> None:
        ctx.publish(OrderAccepted(order_id=event.order_id))

    @audit.on(OrderAccepted)
    async def record(event: OrderAccepted, ctx: HandlerContext) -> None:
        seen.add((event, ctx.envelope))

    async with App([orders, audit], data_dir=tmp_path, broker=broker) as app:
        placed = OrderPlaced(order_id="o-1", qty=2)
        await app.publish(placed, correlation_id="o-1")
        [(event, envelope)] = await seen.wait_for(1)
    assert event.order_id == "o-1"
    assert envelope.correlation_id == "o-1"
    assert envelope.causation_id == str(placed.event_id)
    assert envelope.type == "test.order.accepted"


async def test_failing_handler_is_retried_then_succeeds(
    tmp_path: Any, broker: str, ns: str
) -> None:
    attempts = Probe()
    svc = _service(ns, "orders")

    @svc.on(OrderPlaced)
    async def flaky(event: OrderPlaced, ctx: HandlerContext) -> None:
        attempts.add(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("database is busy")

    async with App([svc], data_dir=tmp_path, broker=broker) as app:
        await app.publish(OrderPlaced(order_id="o-2", qty=1))
        assert await attempts.wait_for(2) == [1, 2]
        assert await app.broker.queue_depth(svc.queue.dlq_name) == 0


async def test_handler_failing_every_time_is_dead_lettered_with_error_headers(
    tmp_path: Any, broker: str, ns: str
) -> None:
    attempts = Probe()
    svc = _service(ns, "orders")

    @svc.on(OrderPlaced)
    async def broken(event: OrderPlaced, ctx: HandlerContext) -> None:
        attempts.add(ctx.attempt)
        ctx.publish(OrderAccepted(order_id=event.order_id))  # must never go out
        raise ValueError(f"cannot place {event.order_id}")

    async with App([svc], data_dir=tmp_path, broker=broker) as app:
        await app.publish(OrderPlaced(order_id="o-3", qty=1))
        dead = await _dlq_message(app, svc.queue.name)
        assert attempts.items == [1, 2, 3]
    headers = dead.envelope.headers
    assert headers[XH_REASON] == "handler-error"
    assert headers[XH_ERROR_TYPE] == "ValueError"
    assert headers[XH_ERROR_MESSAGE] == "cannot place o-3"
    assert headers[XH_ATTEMPTS] == 3
    assert headers[XH_ORIGINAL_ROUTING_KEY] == "test.order.placed"
    assert msgspec.json.decode(dead.body)["orderId"] == "o-3"


async def test_reject_message_dead_letters_at_once(tmp_path: Any, broker: str, ns: str) -> None:
    attempts = Probe()
    svc = _service(ns, "orders")

    @svc.on(OrderPlaced)
    async def picky(event: OrderPlaced, ctx: HandlerContext) -> None:
        attempts.add(ctx.attempt)
        raise RejectMessage("qty must be positive")

    async with App([svc], data_dir=tmp_path, broker=broker) as app:
        await app.publish(OrderPlaced(order_id="o-4", qty=-1))
        dead = await _dlq_message(app, svc.queue.name)
    assert attempts.items == [1]
    assert dead.envelope.headers[XH_REASON] == "rejected"
    assert dead.envelope.headers[XH_ERROR_MESSAGE] == "qty must be positive"


def _raw(queue: str, body: bytes, type_: str) -> OutboundMessage:
    envelope = Envelope(str(uuid.uuid4()), type_, queue, headers={"x-schema-version": 1})
    return OutboundMessage(DEFAULT_EXCHANGE, envelope, body)


@pytest.mark.parametrize(
    ("body", "type_", "reason", "text"),
    [
        (b'{"orderId": "o-5", "qty": "two"', "test.order.placed", "decode-error", "o-5"),
        (
            b'{"eventId": "6f1c3b0e-51a2-4a57-9d6a-0a8d3c1b7e11", "orderId": "o-5", "qty": "two"}',
            "test.order.placed",
            "decode-error",
            "$.qty",
        ),
        (b'{"orderId": "o-5", "qty": 1}', "test.unknown.thing", "unknown-type", "unknown"),
        # Identity is never invented: no eventId (the transport's message id does not count).
        (
            b'{"orderId": "o-5", "qty": 1, "occurredAt": "2024-05-01T12:00:00Z"}',
            "test.order.placed",
            "decode-error",
            "`$.eventId` is missing: a message's identity is never invented",
        ),
        (
            b'{"eventId": "6f1c3b0e-51a2-4a57-9d6a-0a8d3c1b7e11", "orderId": "o-5", "qty": 1}',
            "test.order.placed",
            "decode-error",
            "`$.occurredAt` is missing: when a message occurred is never invented",
        ),
    ],
)
async def test_undecodable_messages_go_to_the_dlq_at_once(
    tmp_path: Any, broker: str, ns: str, body: bytes, type_: str, reason: str, text: str
) -> None:
    handled = Probe()
    svc = _service(ns, "orders")

    @svc.on(OrderPlaced)
    async def handle(event: OrderPlaced, ctx: HandlerContext) -> None:
        handled.add(event)

    async with App([svc], data_dir=tmp_path, broker=broker) as app:
        await app.broker.publish(_raw(svc.queue.name, body, type_))
        dead = await _dlq_message(app, svc.queue.name)
        # A valid message behind it is still processed.
        await app.publish(OrderPlaced(order_id="o-ok", qty=1))
        await handled.wait_for(1)
    assert dead.envelope.headers[XH_REASON] == reason
    assert text in dead.envelope.headers[XH_ERROR_MESSAGE]
    assert dead.body == body


async def test_redelivered_event_has_no_second_effect_but_is_announced_again(
    tmp_path: Any, broker: str, ns: str
) -> None:
    effects = Probe()
    orders = _service(ns, "orders")

    @orders.on(OrderPlaced)
    async def accept(event: OrderPlaced, ctx: HandlerContext) -> None:
        effects.add(event.order_id)
        ctx.publish(OrderAccepted(order_id=event.order_id))

    async with App([orders], data_dir=tmp_path, broker=broker) as app:
        tap = Topology(
            queues=(QueueSpec(f"tap-{ns}", dead_letter=False),),
            bindings=(Binding(f"test.{ns}", f"tap-{ns}", "test.order.accepted"),),
        )
        await app.broker.declare(tap)
        placed = OrderPlaced(order_id="o-6", qty=1)
        await app.publish(placed)
        first = await _get(app, f"tap-{ns}")
        await app.publish(placed)  # the same eventId again
        second = await _get(app, f"tap-{ns}")
    assert effects.items == ["o-6"]
    # The same OrderAccepted (same eventId) went out again, for downstream inboxes to drop.
    assert first.envelope.message_id == second.envelope.message_id
    assert first.body == second.body


async def _get(app: App, queue: str) -> Any:
    with anyio.fail_after(5):
        while (delivery := await app.broker.get(queue)) is None:
            await anyio.wait_all_tasks_blocked()
    await delivery.ack()
    return delivery


async def test_command_with_reply_round_trip(tmp_path: Any, broker: str, ns: str) -> None:
    replies = Probe()
    inventory, orchestrator = _service(ns, "inventory"), _service(ns, "orchestrator")

    @inventory.on(Reserve)
    async def reserve(command: Reserve, ctx: HandlerContext) -> None:
        ctx.reply(Reserved(order_id=command.order_id))

    @orchestrator.on(OrderPlaced)
    async def start(event: OrderPlaced, ctx: HandlerContext) -> None:
        ctx.send(Reserve(order_id=event.order_id), expect_reply=True)

    @orchestrator.on(Reserved, bind=False)
    async def reserved(reply: Reserved, ctx: HandlerContext) -> None:
        replies.add((reply.order_id, ctx.correlation_id))

    async with App([inventory, orchestrator], data_dir=tmp_path, broker=broker) as app:
        await app.publish(OrderPlaced(order_id="o-7", qty=1), correlation_id="o-7")
        assert await replies.wait_for(1) == [("o-7", "o-7")]


async def test_graceful_stop_finishes_the_message_in_flight(
    tmp_path: Any, broker: str, ns: str
) -> None:
    started, release = anyio.Event(), anyio.Event()
    finished = Probe()
    svc = _service(ns, "orders")

    @svc.on(OrderPlaced)
    async def slow(event: OrderPlaced, ctx: HandlerContext) -> None:
        started.set()
        await release.wait()
        finished.add(event.order_id)

    app = App([svc], data_dir=tmp_path, broker=broker)
    async with anyio.create_task_group() as tg, app:
        await app.publish(OrderPlaced(order_id="o-8", qty=1))
        await started.wait()
        tg.start_soon(_set_later, release)
        # Leaving waited for the handler instead of abandoning it.
    assert finished.items == ["o-8"]


async def _set_later(event: anyio.Event) -> None:
    await anyio.wait_all_tasks_blocked()
    event.set()


def test_configuration_errors_are_explicit() -> None:
    with pytest.raises(ConfigurationError, match="service name 'Bad Name' is invalid"):
        Service("Bad Name")
    svc = Service("dupes")

    @svc.on(OrderPlaced)
    async def one(event: OrderPlaced, ctx: HandlerContext) -> None: ...

    with pytest.raises(ConfigurationError, match=r"already handles 'test\.order\.placed'"):
        svc.add_handler(OrderPlaced, one)
    with pytest.raises(ConfigurationError, match=r"repeated: \['dupes'\]"):
        App([svc, Service("dupes")])
    with pytest.raises(ConfigurationError, match="without services only publishes"):
        App([])


async def test_a_publish_only_app_needs_no_service(tmp_path: Any, broker: str, ns: str) -> None:
    seen = Probe()
    audit = _service(ns, "audit")

    @audit.on(OrderAccepted)
    async def record(event: OrderAccepted, ctx: HandlerContext) -> None:
        seen.add(event.order_id)

    # Two Apps on one broker, as in two processes: a producer and a consumer.
    if broker == "memory://":
        broker = f"memory://publish-only-{ns}"
    async with (
        App([audit], data_dir=tmp_path, broker=broker),
        App([], exchange=f"test.{ns}", data_dir=tmp_path, broker=broker) as producer,
    ):
        await producer.publish(OrderAccepted(order_id="o-9"))
        assert await seen.wait_for(1) == ["o-9"]


async def test_services_of_one_app_publish_to_their_own_exchanges(
    tmp_path: Any, broker: str, ns: str
) -> None:
    seen = Probe()
    first = _service(ns, "first")
    second = Service(f"second-{ns}", exchange=f"other.{ns}", retry=FAST, retry_delays=TIERS)
    listener = Service(f"listener-{ns}", exchange=f"other.{ns}")

    @second.on(OrderPlaced)
    async def never(event: OrderPlaced, ctx: HandlerContext) -> None:  # pragma: no cover
        raise AssertionError("OrderPlaced goes to the first exchange only")

    @first.on(OrderPlaced)
    async def accept(event: OrderPlaced, ctx: HandlerContext) -> None:
        await ctx.context.publish(Reserved(order_id=event.order_id))

    @listener.on(Reserved)
    async def heard(event: Reserved, ctx: HandlerContext) -> None:
        seen.add(event.order_id)

    app = App([first, second, listener], data_dir=tmp_path, broker=broker)
    async with app:
        tap = Topology(
            queues=(QueueSpec(f"tap-{ns}", dead_letter=False),),
            bindings=(Binding(f"test.{ns}", f"tap-{ns}", "test.reserved"),),
        )
        await app.broker.declare(tap)
        await app.publish(OrderPlaced(order_id="o-10", qty=1))
        # first's own publish went to first's exchange (the tap sees it) ...
        assert msgspec.json.decode((await _get(app, f"tap-{ns}")).body)["orderId"] == "o-10"
        await app.contexts[second.name].publish(Reserved(order_id="o-11"))
        await seen.wait_for(1)
    # ... and never to the other exchange, where listener heard only second's publish.
    assert seen.items == ["o-11"]


class OrderPlacedV2(Event, routing_key="test.order.placed.v2", version=2):
    order_id: str
    lines: list[int]


async def test_a_v2_handler_reads_v1_through_an_upcaster(
    tmp_path: Any, broker: str, ns: str
) -> None:
    seen = Probe()
    svc = _service(ns, "reader")

    def v1_to_v2(old: OrderPlaced) -> OrderPlacedV2:
        return OrderPlacedV2(event_id=old.event_id, order_id=old.order_id, lines=[old.qty])

    @svc.on(OrderPlacedV2, upcast={OrderPlaced: v1_to_v2})
    async def place(event: OrderPlacedV2, ctx: HandlerContext) -> None:
        seen.add((type(event).__name__, event.order_id, event.lines))

    async with App([svc], data_dir=tmp_path, broker=broker) as app:
        await app.publish(OrderPlaced(order_id="old", qty=3))
        await app.publish(OrderPlacedV2(order_id="new", lines=[1, 2]))
        items = await seen.wait_for(2)
    assert sorted(items) == [("OrderPlacedV2", "new", [1, 2]), ("OrderPlacedV2", "old", [3])]
    assert {b.routing_key for b in svc.topology().bindings} == {
        "test.order.placed",
        "test.order.placed.v2",
    }


def test_a_handler_of_the_wrong_shape_is_refused_at_registration() -> None:
    from actorbus import Event, Service
    from actorbus.exceptions import ConfigurationError

    class Pinged(Event, routing_key="pinged.shape"):
        n: int

    service = Service("shapes")

    def sync_handler(event: Pinged, ctx: HandlerContext) -> None:
        pass  # pragma: no cover

    async def one_argument(event: Pinged) -> None:
        pass  # pragma: no cover

    async def fine(event: Pinged, ctx: HandlerContext) -> None:
        pass  # pragma: no cover

    with pytest.raises(
        ConfigurationError,
        match=r"sync_handler of .*Pinged in service 'shapes' must be an 'async def'",
    ):
        service.add_handler(Pinged, sync_handler)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"must accept two positional arguments"):
        service.add_handler(Pinged, one_argument)  # type: ignore[arg-type]
    service.add_handler(Pinged, fine)
    assert service.subscriptions["pinged.shape"].handler is fine
