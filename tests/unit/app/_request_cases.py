"""Request/reply behaviour, written once and run on every broker (memory here, RabbitMQ in
tests/amqp/test_request.py)."""

from __future__ import annotations

import re

import anyio
import pytest

from actorbus import App, Command, Event, HandlerContext, Service
from actorbus.exceptions import ConfigurationError, RequestTimeoutError, UnroutableError
from actorbus.testing import ManualClock

EXCHANGE = "rr.topic"


class ReserveStock(Command, routing_key="rr.reserve-stock", version=1):
    order_id: str
    qty: int


class StockReserved(Event, routing_key="rr.reserve-stock.result", version=1):
    order_id: str
    qty: int


class NeverAnswered(Command, routing_key="rr.never-answered", version=1):
    order_id: str


class Nobody(Command, routing_key="rr.nobody-handles-this", version=1):
    order_id: str


class OrderPlaced(Event, routing_key="rr.order.placed", version=1):
    order_id: str
    qty: int


def stock_service(gate: anyio.Event | None = None) -> Service:
    """Answers ReserveStock (after ``gate`` is set, if given); swallows NeverAnswered."""
    service = Service("rr-stock", exchange=EXCHANGE, dedupe=False, durable=False)

    @service.on(ReserveStock)
    async def reserve(command: ReserveStock, ctx: HandlerContext) -> None:
        if gate is not None:
            await gate.wait()
        ctx.reply(StockReserved(order_id=command.order_id, qty=command.qty))

    @service.on(NeverAnswered)
    async def swallow(command: NeverAnswered, ctx: HandlerContext) -> None:
        pass

    return service


async def happy_path(broker: str) -> None:
    async with App([stock_service()], broker=broker, exchange=EXCHANGE) as app:
        reply = await app.request(ReserveStock(order_id="o-1", qty=3), StockReserved, timeout=10)
        assert isinstance(reply, StockReserved)
        assert (reply.order_id, reply.qty) == ("o-1", 3)

        # Concurrent requests share the channel and each gets its own reply.
        results: dict[int, StockReserved] = {}

        async def ask(i: int) -> None:
            results[i] = await app.request(
                ReserveStock(order_id=f"o-{i}", qty=i), StockReserved, timeout=10
            )

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(ask, i)
        assert all(results[i].order_id == f"o-{i}" and results[i].qty == i for i in range(50))
        assert app.requester.stats.replied == 51
        assert app.requester.in_flight == 0
        # Replying did not fail (RabbitMQ 3.10 returns a mandatory reply as unroutable).
        assert await app.broker.queue_depth("rr-stock.queue.dlq") == 0
        assert app.requester.stats.late_replies == 0


async def times_out_on_the_clock(broker: str) -> None:
    clock = ManualClock()
    async with App([stock_service()], broker=broker, exchange=EXCHANGE, clock=clock) as app:
        caught: list[BaseException] = []

        async def ask() -> None:
            try:
                await app.request(NeverAnswered(order_id="o-9"), StockReserved, timeout=5)
            except RequestTimeoutError as exc:
                caught.append(exc)

        with anyio.fail_after(10):  # real seconds: only a guard, the wait is virtual
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await clock.wait_for_sleepers(1)
                await clock.advance(4.9)
                assert not caught
                await clock.advance(0.1)
        (exc,) = caught
        assert re.search(
            r"no reply to NeverAnswered sent to 'rr.never-answered' .* within 5 s", str(exc)
        )
        assert isinstance(exc, TimeoutError)
        assert app.requester.stats.timed_out == 1


async def drops_a_late_reply(broker: str) -> None:
    clock = ManualClock()
    gate = anyio.Event()
    async with App([stock_service(gate)], broker=broker, exchange=EXCHANGE, clock=clock) as app:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    with pytest.raises(RequestTimeoutError):
                        await app.request(ReserveStock(order_id="late", qty=1), StockReserved)

                tg.start_soon(first)
                await clock.wait_for_sleepers(1)
                await clock.advance(30)
            # The handler answers now, after its requester gave up: dropped and counted. Its
            # one consumer replies in order, so the late reply arrives before the next one,
            # and the next request gets its own reply, not the late one.
            gate.set()
            reply = await app.request(ReserveStock(order_id="next", qty=2), StockReserved)
        assert reply.order_id == "next"
        assert app.requester.stats.late_replies == 1


async def unroutable_fails_at_once(broker: str) -> None:
    async with App([stock_service()], broker=broker, exchange=EXCHANGE) as app:
        with anyio.fail_after(5), pytest.raises(UnroutableError):
            await app.request(Nobody(order_id="o-1"), StockReserved, timeout=60)
        assert app.requester.in_flight == 0


async def requests_from_a_handler(broker: str) -> None:
    got: list[StockReserved] = []
    done = anyio.Event()
    orders = Service("rr-orders", exchange=EXCHANGE, dedupe=False, durable=False)

    @orders.on(OrderPlaced)
    async def placed(event: OrderPlaced, ctx: HandlerContext) -> None:
        got.append(
            await ctx.request(ReserveStock(order_id=event.order_id, qty=event.qty), StockReserved)
        )
        done.set()

    async with App([orders, stock_service()], broker=broker) as app:
        await app.publish(OrderPlaced(order_id="o-7", qty=7), correlation_id="o-7")
        with anyio.fail_after(10):
            await done.wait()
    assert got[0].order_id == "o-7"


async def refused_in_durable_handlers(broker: str, store: str) -> None:
    errors: list[Exception] = []
    done = anyio.Event()
    orders = Service("rr-orders", exchange=EXCHANGE)

    @orders.on(OrderPlaced)
    async def placed(event: OrderPlaced, ctx: HandlerContext) -> None:
        try:
            await ctx.request(ReserveStock(order_id=event.order_id, qty=1), StockReserved)
        except ConfigurationError as exc:
            errors.append(exc)
        done.set()

    async with App([orders, stock_service()], broker=broker, store=store) as app:
        await app.publish(OrderPlaced(order_id="o-8", qty=1))
        with anyio.fail_after(10):
            await done.wait()
    assert "durable handler" in str(errors[0])
