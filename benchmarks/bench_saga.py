"""Sagas and request/reply: actorbus against the same round trips written with raw aiormq.

Cases (the raw baselines run on the same RabbitMQ node, in the same rounds, interleaved):

* ``saga.throughput``: N order sagas started at once (one ``ctx.transaction()``), each
  sending three commands in turn (reserve → charge → confirm) and awaiting each reply; the
  rate is N ÷ (start → the last ``on_completed``). actorbus: a durable orchestrator with
  :class:`~actorbus.Saga` on a SQLite store (every transition one transaction: the row, its
  history, the next command through the outbox; group commit) and three replying services,
  on ``memory://`` and on RabbitMQ. Raw: N concurrent tasks, each publishing its three
  commands in turn (persistent, mandatory, confirmed) with direct reply-to and awaiting the
  reply, answered by three raw consumers that publish the reply, await its confirm and ack.
  The raw side keeps no state at all, so the ratio prices the durability of the saga.
* ``request.latency``: one request/reply at a time, M times; latency = request → typed
  reply. actorbus: ``await app.request(cmd, Reply, timeout=…)`` (direct reply-to) to a
  service that ``ctx.reply``-ies. Raw: the classic aiormq RPC with direct reply-to on a
  confirm channel (persistent, mandatory), answered by a raw consumer. Rate = 1 ÷ mean.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiormq
import aiormq.abc
import msgspec
from pamqp.commands import Basic

from actorbus import App, Command, Event, HandlerContext, Saga, Service

from ._common import Settings
from ._stats import CaseResult, Sample, interleaved

__all__ = ("run",)

_now = time.perf_counter
_ROUND_TIMEOUT = 120.0
_REPLY_TO = "amq.rabbitmq.reply-to"
_EXCHANGE = "bsaga.topic"
_RAW_QUEUES = ("bsaga.raw.reserve", "bsaga.raw.charge", "bsaga.raw.confirm")
_RAW_RPC_QUEUE = "bsaga.raw.rpc"


class Reserve(Command, routing_key="bsaga.reserve", version=1):
    """Step one's command."""

    order_id: str
    qty: int


class Reserved(Event, routing_key="bsaga.reserve.result", version=1):
    """Step one's reply."""

    order_id: str
    ok: bool


class Charge(Command, routing_key="bsaga.charge", version=1):
    """Step two's command."""

    order_id: str
    customer_id: str


class Charged(Event, routing_key="bsaga.charge.result", version=1):
    """Step two's reply."""

    order_id: str
    ok: bool


class Confirm(Command, routing_key="bsaga.confirm", version=1):
    """Step three's command."""

    order_id: str
    customer_id: str


class Confirmed(Event, routing_key="bsaga.confirm.result", version=1):
    """Step three's reply."""

    order_id: str


class Order(msgspec.Struct):
    """A saga instance's state."""

    order_id: str
    customer_id: str
    qty: int


class _RawCommand(msgspec.Struct, rename="camel"):
    event_id: str
    order_id: str
    customer_id: str
    qty: int


class _RawReply(msgspec.Struct, rename="camel"):
    event_id: str
    order_id: str
    ok: bool


_raw_encode = msgspec.json.Encoder().encode
_raw_command = msgspec.json.Decoder(_RawCommand).decode
_raw_reply = msgspec.json.Decoder(_RawReply).decode


class _Done:
    """Counts completions of a round; ``wait`` returns its Sample."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.started = _now()
        self.event = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.event.set()

    async def sample(self) -> Sample:
        await asyncio.wait_for(self.event.wait(), _ROUND_TIMEOUT)
        return Sample(self.expected, _now() - self.started)


# --------------------------------------------------------------------------- actorbus


def _participants() -> list[Service]:
    inventory = Service("bsaga-inventory", exchange=_EXCHANGE, durable=False)
    payment = Service("bsaga-payment", exchange=_EXCHANGE, durable=False)
    notification = Service("bsaga-notification", exchange=_EXCHANGE, durable=False)

    @inventory.on(Reserve)
    async def reserve(command: Reserve, ctx: HandlerContext) -> None:
        ctx.reply(Reserved(order_id=command.order_id, ok=True))

    @payment.on(Charge)
    async def charge(command: Charge, ctx: HandlerContext) -> None:
        ctx.reply(Charged(order_id=command.order_id, ok=True))

    @notification.on(Confirm)
    async def confirm(command: Confirm, ctx: HandlerContext) -> None:
        ctx.reply(Confirmed(order_id=command.order_id))

    return [inventory, payment, notification]


class _SagaBench:
    """An App running the three-step saga and its participants on ``broker``."""

    def __init__(self, broker: str, data_dir: str) -> None:
        self.current = _Done(0)
        current = self

        async def completed(state: Order, tx: Any) -> None:
            current.current.hit()

        self.saga = (
            Saga("bench", Order, timeout=600, on_completed=completed)
            .step("reserve", send=Reserve, reply=Reserved, ok=lambda r: r.ok)
            .step("charge", send=Charge, reply=Charged, ok=lambda r: r.ok)
            .step("confirm", send=Confirm, reply=Confirmed)
        )
        self.orchestrator = Service("bsaga-orchestrator", exchange=_EXCHANGE, durable=True)
        self.saga.attach(self.orchestrator)
        tag = uuid.uuid4().hex[:8]
        self.app = App(
            [self.orchestrator, *_participants()],
            broker=broker,
            data_dir=data_dir,
            store=f"sqlite:///{data_dir}/saga-{tag}.sqlite3",
        )

    async def round(self, n: int) -> Sample:
        self.current = done = _Done(n)
        ctx = self.app.contexts[self.orchestrator.name]
        prefix = uuid.uuid4().hex[:12]
        async with ctx.transaction() as tx:
            for i in range(n):
                await self.saga.start(tx, f"{prefix}-{i}", Order(f"{prefix}-{i}", "alice", i))
        return await done.sample()


# -------------------------------------------------------------------------------- raw


def _properties(reply_to: str | None, correlation_id: str, message_id: str) -> Basic.Properties:
    return Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        correlation_id=correlation_id,
        reply_to=reply_to,
        timestamp=time.gmtime(),
    )


class _RawResponder:
    """Consumes commands from ``queues``; publishes each reply, awaits its confirm, acks."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, queues: Sequence[str], prefetch: int) -> None:
        await self.channel.basic_qos(prefetch_count=prefetch)
        for queue in queues:
            await self.channel.basic_consume(queue, self._on_message)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        # Answer concurrently, as actorbus's pipeline does within its prefetch window.
        task = asyncio.ensure_future(self._answer(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, message: aiormq.abc.DeliveredMessage) -> None:
        command = _raw_command(message.body)
        props = message.header.properties
        reply = _RawReply(str(uuid.uuid4()), command.order_id, True)
        await self.channel.basic_publish(
            _raw_encode(reply),
            routing_key=props.reply_to or "",
            properties=_properties(None, props.correlation_id or "", reply.event_id),
        )
        await self.channel.basic_ack(message.delivery.delivery_tag)


class _RawRequester:
    """Direct reply-to RPC on one confirm channel: publish, await the confirm and the reply."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.pending: dict[str, asyncio.Future[_RawReply]] = {}

    async def start(self) -> None:
        await self.channel.basic_consume(_REPLY_TO, self._on_reply, no_ack=True)

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        future = self.pending.pop(message.header.properties.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(_raw_reply(message.body))

    async def call(self, queue: str, order_id: str, customer_id: str, qty: int) -> _RawReply:
        message_id = str(uuid.uuid4())
        future: asyncio.Future[_RawReply] = asyncio.get_running_loop().create_future()
        self.pending[message_id] = future
        body = _raw_encode(_RawCommand(message_id, order_id, customer_id, qty))
        await self.channel.basic_publish(
            body,
            routing_key=queue,
            properties=_properties(_REPLY_TO, message_id, message_id),
            mandatory=True,
        )
        return await future


# ------------------------------------------------------------------------------- cases


async def run(settings: Settings, loop: str, *, only: Sequence[str] = ()) -> list[CaseResult]:
    """Run ``saga.throughput`` (memory, and RabbitMQ if any) and ``request.latency``."""

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(o) or o.startswith(name) for o in only)

    results: list[CaseResult] = []
    url = settings.amqp_url
    with tempfile.TemporaryDirectory(prefix="actorbus-bench-saga-") as data_dir:
        connection = await aiormq.connect(url) if url is not None else None
        try:
            if wanted("saga.throughput"):
                results += await _throughput(settings, loop, connection, url, data_dir)
            if wanted("request.latency") and connection is not None and url is not None:
                results.append(await _latency(settings, loop, connection, url, data_dir))
        finally:
            if connection is not None:
                await connection.close()
    return results


async def _raw_channels(
    connection: aiormq.abc.AbstractConnection, queues: Sequence[str], prefetch: int
) -> tuple[_RawRequester, _RawResponder]:
    admin = await connection.channel()
    for queue in queues:
        await admin.queue_declare(queue, durable=True, auto_delete=False)
        await admin.queue_purge(queue)
    await admin.close()
    responder = _RawResponder(await connection.channel())
    await responder.start(queues, prefetch)
    requester = _RawRequester(await connection.channel())
    await requester.start()
    return requester, responder


async def _throughput(
    settings: Settings,
    loop: str,
    connection: aiormq.abc.AbstractConnection | None,
    url: str | None,
    data_dir: str,
) -> list[CaseResult]:
    count = settings.count(2_000)
    variants: dict[str, Callable[[int], Awaitable[Sample]]] = {}
    apps: list[App] = []
    memory = _SagaBench("memory://", data_dir)
    apps.append(memory.app)
    variants["actorbus memory://"] = memory.round
    if url is not None:
        amqp = _SagaBench(url, data_dir)
        apps.append(amqp.app)
        variants["actorbus amqp"] = amqp.round
    if connection is not None:
        requester, _ = await _raw_channels(connection, _RAW_QUEUES, settings.prefetch)

        async def raw_round(n: int) -> Sample:
            started = _now()

            async def flow(i: int) -> None:
                order_id = f"o-{i}"
                for queue in _RAW_QUEUES:
                    await requester.call(queue, order_id, "alice", i)

            await asyncio.wait_for(asyncio.gather(*[flow(i) for i in range(n)]), _ROUND_TIMEOUT)
            return Sample(n, _now() - started)

        variants["raw aiormq"] = raw_round
    for app in apps:
        await app.__aenter__()
    try:
        series = await interleaved(
            variants,
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"saga.throughput [{loop}]",
        )
    finally:
        for app in reversed(apps):
            await app.__aexit__(None, None, None)
    note = (
        f"{count} sagas started in one transaction, 3 steps each; durable orchestrator on "
        "SQLite (synchronous=FULL, group commit); raw: the same 3 RPCs with direct reply-to, "
        "no state"
    )
    base = series.get("raw aiormq")
    return [
        CaseResult("saga.throughput", loop, series[name], base, note=note)
        for name in variants
        if name != "raw aiormq"
    ]


class _Ask(Command, routing_key="bsaga.ask", version=1):
    """The request of ``request.latency``."""

    order_id: str
    qty: int


class _Answer(Event, routing_key="bsaga.ask.result", version=1):
    """Its reply."""

    order_id: str
    ok: bool


async def _latency(
    settings: Settings,
    loop: str,
    connection: aiormq.abc.AbstractConnection,
    url: str,
    data_dir: str,
) -> CaseResult:
    responder = Service("bsaga-responder", exchange=_EXCHANGE, durable=False)

    @responder.on(_Ask)
    async def answer(command: _Ask, ctx: HandlerContext) -> None:
        ctx.reply(_Answer(order_id=command.order_id, ok=True))

    requester, _ = await _raw_channels(connection, (_RAW_RPC_QUEUE,), settings.prefetch)
    count = max(100, settings.count(2_000) // 2)

    async with App([responder], broker=url, data_dir=data_dir) as app:

        async def actorbus_round(n: int) -> Sample:
            latencies: list[float] = []
            started = _now()
            for i in range(n):
                t0 = _now()
                await app.request(_Ask(order_id="o", qty=i), _Answer, timeout=30)
                latencies.append(_now() - t0)
            return Sample(n, _now() - started, latencies)

        async def raw_round(n: int) -> Sample:
            latencies: list[float] = []
            started = _now()
            for i in range(n):
                t0 = _now()
                await requester.call(_RAW_RPC_QUEUE, "o", "alice", i)
                latencies.append(_now() - t0)
            return Sample(n, _now() - started, latencies)

        series = await interleaved(
            {"actorbus": actorbus_round, "raw aiormq": raw_round},
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"request.latency [{loop}]",
        )
    return CaseResult(
        "request.latency",
        loop,
        series["actorbus"],
        series["raw aiormq"],
        target=0.9,
        note=f"{count} sequential requests; rate = 1 / mean latency; direct reply-to on both",
    )
