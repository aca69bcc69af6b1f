"""RabbitMQ: actorbus against raw aiormq on the same server, queue and settings.

Cases (each with its own exchange and queue, purged between rounds):

* ``amqp.consume``: N messages are preloaded (outside the timing), then consumed and acked
  with prefetch P; the rate runs from the first delivery handled to the last. actorbus: an
  :class:`~actorbus.App` whose service handles them (decode, inbox, handler, coalesced
  ``multiple=True`` acks). Raw: ``basic_consume`` with the same prefetch, a typed msgspec
  decode, and the same ack batching (one ``basic.ack(multiple=True)`` per quarter of the
  prefetch window, or after the same linger).
* ``amqp.publish``: N events published persistently with confirms and ``mandatory``, at
  most W confirms in flight. actorbus: ``broker.publish_batch`` and ``App.publish`` under
  ``gather``; raw: ``basic_publish`` under ``gather`` bounded by a semaphore of W. Both
  encode and build properties inside the timing.
* ``amqp.e2e``: publish and consume at once: batches of 50 published with W confirms in
  flight while the consumer handles them; latency = batch publish start → handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiormq
import aiormq.abc
import msgspec
from pamqp.commands import Basic

from actorbus import App, HandlerContext, Service
from actorbus.brokers import Binding, OutboundMessage, Topology
from actorbus.brokers.amqp._acker import ACK_LINGER  # the same linger as actorbus
from actorbus.messages import SCHEMA_VERSION_HEADER, Envelope

from . import bench_peers
from ._common import OrderCreated, PlainOrderCreated, Settings, make_events, make_plain
from ._stats import CaseResult, Sample, Series, TimedRound, interleaved, produce_batches

__all__ = ("run",)

_now = time.perf_counter
_E2E_BATCH = 50

_CONSUME_X, _CONSUME_Q = "bench.consume.x", "bench.consume"
_PUBLISH_X, _PUBLISH_Q = "bench.publish.x", "bench.publish"
_E2E_X, _E2E_Q = "bench.e2e.x", "bench.e2e"
_E2E_RAW_X, _E2E_RAW_Q = "bench.e2e.raw.x", "bench.e2e.raw"
_KEY = "order.created"

_plain_encode = msgspec.json.Encoder().encode
_plain_decode = msgspec.json.Decoder(PlainOrderCreated).decode


def raw_properties(event: PlainOrderCreated) -> Basic.Properties:
    """The AMQP properties a careful raw publisher sets: the same that actorbus sends."""
    return Basic.Properties(
        content_type="application/json",
        headers={"x-schema-version": 1},
        delivery_mode=2,
        message_id=str(event.event_id),
        timestamp=time.gmtime(),
        message_type=_KEY,
    )


async def raw_publish_all(
    channel: aiormq.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    events: Sequence[PlainOrderCreated],
    window: int,
) -> None:
    """Publish ``events`` with confirms, at most ``window`` awaiting their confirm."""
    sem = asyncio.Semaphore(window)
    publish = channel.basic_publish

    async def one(event: PlainOrderCreated) -> None:
        async with sem:
            await publish(
                _plain_encode(event),
                exchange=exchange,
                routing_key=routing_key,
                properties=raw_properties(event),
                mandatory=True,
            )

    await asyncio.gather(*[one(e) for e in events])


class RawConsumer:
    """A raw aiormq consumer with the same ack batching as actorbus.

    Each delivery is decoded with a typed msgspec decoder; acks are coalesced the way
    actorbus's ``ChannelAcker`` does it: one ``basic.ack(multiple=True)`` once a quarter of
    the prefetch window is waiting, or :data:`ACK_LINGER` seconds after the first waiting
    one, sent by a small acker task. (Acking once per event-loop turn instead sends ~20x more
    ack frames and makes the baseline slower than it needs to be.)
    """

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.state = TimedRound(0)
        self._tag = 0
        self._acked = 0
        self._threshold = 1
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer_tag: str | None = None

    async def start(self, queue: str, prefetch: int) -> None:
        await self.channel.basic_qos(prefetch_count=prefetch)
        self._threshold = max(1, prefetch // 4)
        self._task = asyncio.get_running_loop().create_task(self._acker())
        ok = await self.channel.basic_consume(queue, self._on_message)
        self._consumer_tag = ok.consumer_tag

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        event = _plain_decode(message.body)
        tag = self._tag = message.delivery.delivery_tag  # type: ignore[union-attr]
        self.state.hit(event.qty)
        if tag - self._acked >= self._threshold:
            self._wake.set()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ACK_LINGER, self._wake.set)

    async def _acker(self) -> None:
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            tag = self._tag
            if tag > self._acked:
                self._acked = tag
                await self.channel.basic_ack(tag, multiple=True, wait=False)

    async def stop(self) -> None:
        if self._consumer_tag is not None:
            await self.channel.basic_cancel(self._consumer_tag)
        await asyncio.sleep(0)
        if self._tag > self._acked:
            self._acked = self._tag
            await self.channel.basic_ack(self._tag, multiple=True, wait=False)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.channel.close()


def _outbound(exchange: str, app: App, events: Sequence[OrderCreated]) -> list[OutboundMessage]:
    """What ``App.publish`` builds (envelope and body), built ahead for ``publish_batch``."""
    encode = app.codec.encode
    now = time.time()
    return [
        OutboundMessage(
            exchange,
            Envelope(
                e.message_id,
                e.__routing_key__,
                e.__routing_key__,
                headers={SCHEMA_VERSION_HEADER: e.schema_version},
                timestamp=now,
            ),
            encode(e),
        )
        for e in events
    ]


async def _works(
    variant: Callable[[int], Awaitable[Sample]],
    name: str,
    case: str,
    loop: str,
    rows: list[CaseResult],
) -> bool:
    """Try a peer on 100 messages; if it fails, add a skipped row saying why."""
    try:
        await variant(100)
    except Exception as exc:
        rows.append(
            CaseResult(
                case, loop, Series(name), skipped=f"{name} failed: {type(exc).__name__}: {exc}"
            )
        )
        return False
    return True


def _row(
    case: str, loop: str, series: dict[str, Series], subject: str, base: str, **kw: Any
) -> CaseResult:
    return CaseResult(case, loop, series[subject], series[base], **kw)


async def run(settings: Settings, loop: str, *, only: Sequence[str] = ()) -> list[CaseResult]:
    """Run the RabbitMQ cases on the running (asyncio) event loop."""
    url = settings.amqp_url
    if url is None:  # pragma: no cover - the caller checks
        return []

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(o) or o.startswith(name) for o in only)

    results: list[CaseResult] = []
    connection = await aiormq.connect(url)
    try:
        admin = await connection.channel()
        with tempfile.TemporaryDirectory(prefix="actorbus-bench-") as data_dir:
            if wanted("amqp.consume") or wanted("peers"):
                results += await _consume(url, settings, loop, connection, admin, data_dir, wanted)
            if wanted("amqp.publish") or wanted("peers"):
                results += await _publish(url, settings, loop, connection, admin, data_dir, wanted)
            if wanted("amqp.e2e"):
                results += await _e2e(url, settings, loop, connection, admin, data_dir)
    finally:
        await connection.close()
    return results


# ---------------------------------------------------------------------------- consume


async def _consume(
    url: str,
    settings: Settings,
    loop: str,
    connection: aiormq.abc.AbstractConnection,
    admin: aiormq.abc.AbstractChannel,
    data_dir: str,
    wanted: Callable[[str], bool],
) -> list[CaseResult]:
    prefetch = settings.prefetch
    current = TimedRound(0)
    service = Service("benchc", queue=_CONSUME_Q, exchange=_CONSUME_X, prefetch=prefetch)

    @service.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        current.hit(event.qty)

    # Declare the service's topology (queue with its dead-letter and retry queues) once.
    async with App([service], broker=url, data_dir=data_dir):
        pass
    loader = await connection.channel()

    async def preload(n: int) -> None:
        await admin.queue_purge(_CONSUME_Q)
        await raw_publish_all(loader, "", _CONSUME_Q, make_plain(n), settings.confirm_window)

    async def actorbus_round(n: int) -> Sample:
        nonlocal current
        await preload(n)
        current = state = TimedRound(n)
        async with App([service], broker=url, data_dir=data_dir):
            await state.wait()
        return state.consume_sample()

    async def raw_round(n: int) -> Sample:
        await preload(n)
        consumer = RawConsumer(await connection.channel())
        consumer.state = state = TimedRound(n)
        await consumer.start(_CONSUME_Q, prefetch)
        await state.wait()
        await consumer.stop()
        return state.consume_sample()

    variants: dict[str, Callable[[int], Awaitable[Sample]]] = {}
    if wanted("amqp.consume"):
        variants["actorbus"] = actorbus_round
    variants["raw aiormq"] = raw_round
    broken: list[CaseResult] = []
    if wanted("peers"):
        for name, peer in bench_peers.consume_variants(url, _CONSUME_Q, prefetch).items():

            async def peer_round(n: int, peer: Any = peer) -> Sample:
                await preload(n)
                return await peer(n)  # type: ignore[no-any-return]

            if await _works(peer_round, name, "peers.consume", loop, broken):
                variants[name] = peer_round
    count = settings.count(20_000)
    series = await interleaved(
        variants,
        rounds=settings.rounds,
        count=count,
        warmup=count // 10,
        progress=settings.progress,
        label=f"amqp.consume [{loop}]",
    )
    await loader.close()
    note = f"{count} preloaded, prefetch {prefetch}, multiple=True acks; first→last delivery"
    rows = broken
    if "actorbus" in series:
        rows.append(
            _row("amqp.consume", loop, series, "actorbus", "raw aiormq", target=1.0, note=note)
        )
    for name in series:
        if name not in ("actorbus", "raw aiormq"):
            rows.append(
                _row(
                    "peers.consume",
                    loop,
                    series,
                    name,
                    "raw aiormq",
                    note=f"idiomatic {name}: one ack per message; prefetch {prefetch}",
                )
            )
    return rows


# ---------------------------------------------------------------------------- publish


async def _publish(
    url: str,
    settings: Settings,
    loop: str,
    connection: aiormq.abc.AbstractConnection,
    admin: aiormq.abc.AbstractChannel,
    data_dir: str,
    wanted: Callable[[str], bool],
) -> list[CaseResult]:
    window = settings.confirm_window
    service = Service("benchp", queue=_PUBLISH_Q, exchange=_PUBLISH_X)
    rows: list[CaseResult] = []
    async with App([service], broker=url, data_dir=data_dir) as app:
        await app.broker.declare(Topology(bindings=(Binding(_PUBLISH_X, _PUBLISH_Q, _KEY),)))
        raw_channel = await connection.channel()
        broker = app.broker

        async def batch_round(n: int) -> Sample:
            await admin.queue_purge(_PUBLISH_Q)
            events = make_events(n)
            start = _now()
            await broker.publish_batch(_outbound(_PUBLISH_X, app, events))
            return Sample(n, _now() - start)

        async def app_round(n: int) -> Sample:
            await admin.queue_purge(_PUBLISH_Q)
            events = make_events(n)
            publish = app.publish
            start = _now()
            await asyncio.gather(*[publish(e) for e in events])
            return Sample(n, _now() - start)

        async def raw_round(n: int) -> Sample:
            await admin.queue_purge(_PUBLISH_Q)
            events = make_plain(n)
            start = _now()
            await raw_publish_all(raw_channel, _PUBLISH_X, _KEY, events, window)
            return Sample(n, _now() - start)

        variants: dict[str, Callable[[int], Awaitable[Sample]]] = {}
        if wanted("amqp.publish"):
            variants["actorbus publish_batch"] = batch_round
            variants["actorbus App.publish"] = app_round
        variants["raw aiormq"] = raw_round
        if wanted("peers"):
            for name, peer in bench_peers.publish_variants(url, _PUBLISH_X, _KEY, window).items():

                async def peer_round(n: int, peer: Any = peer) -> Sample:
                    await admin.queue_purge(_PUBLISH_Q)
                    return await peer(n)  # type: ignore[no-any-return]

                if await _works(peer_round, name, "peers.publish", loop, rows):
                    variants[name] = peer_round
        count = settings.count(20_000)
        series = await interleaved(
            variants,
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"amqp.publish [{loop}]",
        )
        await admin.queue_purge(_PUBLISH_Q)
        await raw_channel.close()
    note = f"{count} persistent, mandatory, confirms; {window} in flight; encode included"
    for name in series:
        if name == "raw aiormq":
            continue
        actorbus = name.startswith("actorbus")
        rows.append(
            _row(
                "amqp.publish" if actorbus else "peers.publish",
                loop,
                series,
                name,
                "raw aiormq",
                target=0.9 if actorbus else None,
                note=note if actorbus else f"idiomatic {name}; {window} in flight",
            )
        )
    return rows


# -------------------------------------------------------------------------------- e2e


async def _e2e(
    url: str,
    settings: Settings,
    loop: str,
    connection: aiormq.abc.AbstractConnection,
    admin: aiormq.abc.AbstractChannel,
    data_dir: str,
) -> list[CaseResult]:
    prefetch = settings.prefetch
    in_flight_batches = max(1, settings.confirm_window // _E2E_BATCH)
    current = TimedRound(0)
    service = Service("benche", queue=_E2E_Q, exchange=_E2E_X, prefetch=prefetch)

    @service.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        current.hit(event.qty)

    await admin.exchange_declare(_E2E_RAW_X, exchange_type="topic", durable=True)
    await admin.queue_declare(_E2E_RAW_Q, durable=True)
    await admin.queue_bind(_E2E_RAW_Q, _E2E_RAW_X, routing_key=_KEY)
    await admin.queue_purge(_E2E_RAW_Q)
    raw_pub = await connection.channel()
    raw_consumer = RawConsumer(await connection.channel())
    await raw_consumer.start(_E2E_RAW_Q, prefetch)

    async with App([service], broker=url, data_dir=data_dir) as app:
        broker = app.broker

        async def actorbus_round(n: int) -> Sample:
            nonlocal current
            events = make_events(n)
            current = state = TimedRound(n)

            async def publish(lo: int, hi: int) -> None:
                await broker.publish_batch(_outbound(_E2E_X, app, events[lo:hi]))

            start = _now()
            sent = await produce_batches(n, _E2E_BATCH, in_flight_batches, publish)
            await state.wait()
            elapsed = state.last - start
            return Sample(n, elapsed, [a - s for a, s in zip(state.arrived, sent, strict=True)])

        async def raw_round(n: int) -> Sample:
            events = make_plain(n)
            raw_consumer.state = state = TimedRound(n)
            publish_one = raw_pub.basic_publish

            async def publish(lo: int, hi: int) -> None:
                await asyncio.gather(
                    *[
                        publish_one(
                            _plain_encode(e),
                            exchange=_E2E_RAW_X,
                            routing_key=_KEY,
                            properties=raw_properties(e),
                            mandatory=True,
                        )
                        for e in events[lo:hi]
                    ]
                )

            start = _now()
            sent = await produce_batches(n, _E2E_BATCH, in_flight_batches, publish)
            await state.wait()
            elapsed = state.last - start
            return Sample(n, elapsed, [a - s for a, s in zip(state.arrived, sent, strict=True)])

        count = settings.count(20_000)
        series = await interleaved(
            {"actorbus": actorbus_round, "raw aiormq": raw_round},
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"amqp.e2e [{loop}]",
        )
    await raw_consumer.stop()
    await raw_pub.close()
    await admin.queue_delete(_E2E_RAW_Q)
    await admin.exchange_delete(_E2E_RAW_X)
    return [
        _row(
            "amqp.e2e",
            loop,
            series,
            "actorbus",
            "raw aiormq",
            target=0.9,
            note=f"{count} msgs, batches of {_E2E_BATCH}, {settings.confirm_window} confirms in "
            f"flight, prefetch {prefetch}; latency = publish → handler",
        )
    ]
