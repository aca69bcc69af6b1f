"""NATS JetStream: actorbus against raw nats-py on the same server, stream and consumer.

Cases (the server is a throwaway ``nats-server -js`` the run starts, or ``--nats URL``):

* ``nats.consume``: N messages are preloaded into the service's stream (outside the
  timing), then consumed and acked with prefetch P; the rate runs from the first delivery
  handled to the last. actorbus: an :class:`~actorbus.App` whose service handles them
  (decode, inbox, handler, ack). Raw: ``pull_subscribe_bind`` to the *same* durable
  consumer, ``fetch(P)`` in a loop, a typed msgspec decode and ``await msg.ack()`` per
  message, the way nats-py documents a pull consumer.
* ``nats.publish``: N events published to the stream, every JetStream ack awaited, at most
  W in flight. actorbus: ``broker.publish_batch`` and ``App.publish`` under ``gather``;
  raw: ``js.publish_async`` with the same headers an actorbus message carries the envelope
  in, at most W futures outstanding. Both encode inside the timing.
* ``nats.e2e``: publish and consume at once: batches of 50 published with W acks in flight
  while the consumer handles them; latency = batch publish start → handler. Raw: the same
  publisher and a ``fetch`` loop on a stream and durable consumer of its own.
* ``nats.peers.consume``, ``nats.peers.publish``: FastStream's NATS broker written
  idiomatically (a pydantic model, a pull subscriber of batch P bound to the same durable
  consumer, ack after the handler; ``broker.publish`` under ``gather``), when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import nats
import nats.js

from actorbus import App, HandlerContext, Service
from actorbus.brokers import Binding, OutboundMessage, Topology
from actorbus.brokers.nats._mapping import consumer_name, headers_for, stream_name, subject_for
from actorbus.messages import SCHEMA_VERSION_HEADER, Envelope

from ._common import OrderCreated, PlainOrderCreated, Settings, make_events, make_plain
from ._stats import Arrivals, CaseResult, Sample, Series, TimedRound, interleaved, produce_batches
from .bench_peers import _model

__all__ = ("run",)

_now = time.perf_counter
_ROUND_TIMEOUT = 120.0
_E2E_BATCH = 50
#: Seconds a raw ``fetch`` waits: the expiry of actorbus's pull requests.
_FETCH_TIMEOUT = 1.0

_CONSUME_X, _CONSUME_Q = "nbench.consume.x", "nbench.consume"
_PUBLISH_X, _PUBLISH_Q = "nbench.publish.x", "nbench.publish"
_E2E_X, _E2E_Q = "nbench.e2e.x", "nbench.e2e"
_E2E_RAW_X, _E2E_RAW_CONSUMER = "nbench.e2e.raw", "raw"
_KEY = "order.created"
_RAW_ASYNC = "raw js.publish_async"
_RAW_AWAIT = "raw js.publish"

_plain_encode = msgspec.json.Encoder().encode
_plain_decode = msgspec.json.Decoder(PlainOrderCreated).decode


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


def raw_headers(exchange: str, event: PlainOrderCreated) -> dict[str, str]:
    """The headers a careful raw publisher sets: the ones actorbus carries an envelope in."""
    envelope = Envelope(
        str(event.event_id),
        _KEY,
        _KEY,
        headers={SCHEMA_VERSION_HEADER: event.schema_version},
        timestamp=time.time(),
    )
    return headers_for(exchange, envelope)


async def raw_publish_all(
    js: nats.js.JetStreamContext, exchange: str, events: Sequence[PlainOrderCreated], window: int
) -> None:
    """Publish ``events`` to ``exchange``'s subject, at most ``window`` acks outstanding."""
    subject = subject_for(exchange, _KEY)
    pending: list[asyncio.Future[Any]] = []
    for event in events:
        if len(pending) >= window:
            await pending.pop(0)
        pending.append(
            await js.publish_async(
                subject, _plain_encode(event), headers=raw_headers(exchange, event)
            )
        )
    for future in pending:
        await future


class RawConsumer:
    """A raw nats-py pull consumer: ``fetch(prefetch)`` in a loop, decode, ack each."""

    def __init__(self, js: nats.js.JetStreamContext, stream: str, consumer: str) -> None:
        self.js = js
        self.stream = stream
        self.consumer = consumer
        self.state: Any = TimedRound(0)
        self._task: asyncio.Task[None] | None = None

    async def start(self, prefetch: int) -> None:
        psub = await self.js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
        self._task = asyncio.get_running_loop().create_task(self._run(psub, prefetch))

    async def _run(self, psub: Any, prefetch: int) -> None:
        try:
            while True:
                try:
                    msgs = await psub.fetch(prefetch, timeout=_FETCH_TIMEOUT)
                except TimeoutError:
                    continue
                for msg in msgs:
                    event = _plain_decode(msg.data)
                    await msg.ack()
                    self.state.hit(event.qty)
        finally:
            await psub.unsubscribe()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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


def _faststream_missing() -> str | None:
    for module in ("faststream", "pydantic"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'faststream[nats]')"
    return None


async def run(settings: Settings, loop: str, *, only: Sequence[str] = ()) -> list[CaseResult]:
    """Run the NATS cases on the running (asyncio) event loop."""
    url = settings.nats_url
    if url is None:  # pragma: no cover - the caller checks
        return []

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(o) or o.startswith(name) for o in only)

    results: list[CaseResult] = []
    nc = await nats.connect(url, max_reconnect_attempts=1)  # a wrong --nats fails fast
    try:
        js = nc.jetstream()
        with tempfile.TemporaryDirectory(prefix="actorbus-bench-nats-") as data_dir:
            if wanted("nats.consume") or wanted("nats.peers.consume"):
                results += await _consume(url, settings, loop, js, data_dir, wanted)
            if wanted("nats.publish") or wanted("nats.peers.publish"):
                results += await _publish(url, settings, loop, js, data_dir, wanted)
            if wanted("nats.e2e"):
                results += await _e2e(url, settings, loop, js, data_dir)
    finally:
        await nc.close()
    return results


def _row(
    case: str, loop: str, series: dict[str, Series], subject: str, base: str, **kw: Any
) -> CaseResult:
    return CaseResult(case, loop, series[subject], series[base], **kw)


# ---------------------------------------------------------------------------- consume


async def _consume(
    url: str,
    settings: Settings,
    loop: str,
    js: nats.js.JetStreamContext,
    data_dir: str,
    wanted: Callable[[str], bool],
) -> list[CaseResult]:
    prefetch = settings.prefetch
    counter = Arrivals(0)
    service = Service("nbenchc", queue=_CONSUME_Q, exchange=_CONSUME_X, prefetch=prefetch)

    @service.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        counter.hit()

    # Declare the service's topology once; the raw consumer binds to the same consumer.
    async with App([service], broker=url, data_dir=data_dir):
        pass
    stream = stream_name(_CONSUME_X)
    consumer = consumer_name(_CONSUME_Q, f"{stream} {subject_for(_CONSUME_X, _KEY)}")
    await js.consumer_info(stream, consumer)  # the name is what the topology declared

    async def preload(n: int) -> None:
        await raw_publish_all(js, _CONSUME_X, make_plain(n), settings.confirm_window)

    async def actorbus_round(n: int) -> Sample:
        nonlocal counter
        await preload(n)
        counter = state = Arrivals(n)
        async with App([service], broker=url, data_dir=data_dir):
            return await state.wait(_ROUND_TIMEOUT)

    async def raw_round(n: int) -> Sample:
        await preload(n)
        psub = await js.pull_subscribe_bind(durable=consumer, stream=stream)
        state = Arrivals(n)
        try:
            async with asyncio.timeout(_ROUND_TIMEOUT):
                while state.count < n:
                    try:
                        msgs = await psub.fetch(prefetch, timeout=_FETCH_TIMEOUT)
                    except TimeoutError:
                        continue
                    for msg in msgs:
                        _plain_decode(msg.data)
                        await msg.ack()
                        state.hit()
        finally:
            await psub.unsubscribe()
        return await state.wait()

    variants: dict[str, Callable[[int], Awaitable[Sample]]] = {}
    if wanted("nats.consume"):
        variants["actorbus"] = actorbus_round
    variants["raw nats-py"] = raw_round
    rows: list[CaseResult] = []
    if wanted("nats.peers.consume"):
        missing = _faststream_missing()
        if missing is not None:
            rows.append(
                CaseResult("nats.peers.consume", loop, Series("faststream"), skipped=missing)
            )
        else:

            async def faststream_round(n: int) -> Sample:
                await preload(n)
                return await _faststream_consume(url, stream, consumer, prefetch, n)

            if await _works(faststream_round, "faststream", "nats.peers.consume", loop, rows):
                variants["faststream"] = faststream_round
    # Twice the AMQP count: a NATS round is over in half a second, and a round that short
    # on a shared machine is mostly noise (the App's start and stop are outside the timing).
    count = settings.count(40_000)
    series = await interleaved(
        variants,
        rounds=settings.rounds,
        count=count,
        warmup=count // 10,
        progress=settings.progress,
        label=f"nats.consume [{loop}]",
    )
    if "actorbus" in series:
        rows.append(
            _row(
                "nats.consume",
                loop,
                series,
                "actorbus",
                "raw nats-py",
                target=1.0,
                note=f"{count} preloaded, prefetch {prefetch}, same durable consumer; raw: "
                f"fetch({prefetch}) + ack each; first→last delivery",
            )
        )
    if "faststream" in series:
        rows.append(
            _row(
                "nats.peers.consume",
                loop,
                series,
                "faststream",
                "raw nats-py",
                note=f"idiomatic FastStream: pydantic model, PullSub(batch_size={prefetch}), "
                "ack after the handler",
            )
        )
    return rows


# ---------------------------------------------------------------------------- publish


async def _publish(
    url: str,
    settings: Settings,
    loop: str,
    js: nats.js.JetStreamContext,
    data_dir: str,
    wanted: Callable[[str], bool],
) -> list[CaseResult]:
    window = settings.confirm_window
    service = Service("nbenchp", queue=_PUBLISH_Q, exchange=_PUBLISH_X)
    stream = stream_name(_PUBLISH_X)
    rows: list[CaseResult] = []
    async with App([service], broker=url, data_dir=data_dir) as app:
        broker = app.broker
        # A queue bound and not consumed: every message is stored (interest retention).
        await broker.declare(Topology(bindings=(Binding(_PUBLISH_X, _PUBLISH_Q, _KEY),)))

        async def purge() -> None:
            await js.purge_stream(stream)

        async def batch_round(n: int) -> Sample:
            await purge()
            events = make_events(n)
            start = _now()
            await broker.publish_batch(_outbound(_PUBLISH_X, app, events))
            return Sample(n, _now() - start)

        async def app_round(n: int) -> Sample:
            await purge()
            events = make_events(n)
            publish = app.publish
            sem = asyncio.Semaphore(window)

            async def one(event: OrderCreated) -> None:
                async with sem:
                    await publish(event)

            start = _now()
            await asyncio.gather(*[one(e) for e in events])
            return Sample(n, _now() - start)

        async def raw_async_round(n: int) -> Sample:
            await purge()
            events = make_plain(n)
            start = _now()
            await raw_publish_all(js, _PUBLISH_X, events, window)
            return Sample(n, _now() - start)

        async def raw_await_round(n: int) -> Sample:
            await purge()
            events = make_plain(n)
            subject = subject_for(_PUBLISH_X, _KEY)
            sem = asyncio.Semaphore(window)

            async def one(event: PlainOrderCreated) -> None:
                async with sem:
                    await js.publish(
                        subject, _plain_encode(event), headers=raw_headers(_PUBLISH_X, event)
                    )

            start = _now()
            await asyncio.gather(*[one(e) for e in events])
            return Sample(n, _now() - start)

        variants: dict[str, Callable[[int], Awaitable[Sample]]] = {}
        if wanted("nats.publish"):
            variants["actorbus publish_batch"] = batch_round
            variants["actorbus App.publish"] = app_round
        variants[_RAW_ASYNC] = raw_async_round
        variants[_RAW_AWAIT] = raw_await_round
        if wanted("nats.peers.publish"):
            missing = _faststream_missing()
            if missing is not None:
                rows.append(
                    CaseResult("nats.peers.publish", loop, Series("faststream"), skipped=missing)
                )
            else:

                async def faststream_round(n: int) -> Sample:
                    await purge()
                    return await _faststream_publish(url, stream, window, n)

                if await _works(faststream_round, "faststream", "nats.peers.publish", loop, rows):
                    variants["faststream"] = faststream_round
        count = settings.count(20_000)
        series = await interleaved(
            variants,
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"nats.publish [{loop}]",
        )
        await purge()
    note = f"{count} to a file stream, JetStream acks awaited, {window} in flight, encode included"
    if "actorbus publish_batch" in series:
        rows.append(
            _row(
                "nats.publish",
                loop,
                series,
                "actorbus publish_batch",
                _RAW_ASYNC,
                target=0.9,
                note=f"{note}; raw: js.publish_async, at most {window} futures outstanding",
            )
        )
    if "actorbus App.publish" in series:
        rows.append(
            _row(
                "nats.publish",
                loop,
                series,
                "actorbus App.publish",
                _RAW_AWAIT,
                target=0.9,
                note=f"{note}; App.publish and raw js.publish under gather",
            )
        )
    if "faststream" in series:
        rows.append(
            _row(
                "nats.peers.publish",
                loop,
                series,
                "faststream",
                _RAW_AWAIT,
                note=f"idiomatic FastStream: broker.publish(stream=...) under gather, {window} "
                "in flight",
            )
        )
    return rows


# -------------------------------------------------------------------------------- e2e


async def _e2e(
    url: str,
    settings: Settings,
    loop: str,
    js: nats.js.JetStreamContext,
    data_dir: str,
) -> list[CaseResult]:
    prefetch = settings.prefetch
    window = settings.confirm_window
    in_flight_batches = max(1, window // _E2E_BATCH)
    current = TimedRound(0)
    service = Service("nbenche", queue=_E2E_Q, exchange=_E2E_X, prefetch=prefetch)

    @service.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        current.hit(event.qty)

    raw_x = _E2E_RAW_X
    raw_stream = stream_name(raw_x)
    await js.add_stream(
        name=raw_stream, subjects=[f"{raw_x}.>"], retention="interest", duplicate_window=120
    )
    await js.add_consumer(
        raw_stream,
        durable_name=_E2E_RAW_CONSUMER,
        filter_subject=subject_for(raw_x, _KEY),
        ack_policy="explicit",
        ack_wait=30,
        max_ack_pending=10_000,
    )
    raw_consumer = RawConsumer(js, raw_stream, _E2E_RAW_CONSUMER)
    await raw_consumer.start(prefetch)
    try:
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
                latencies = [a - s for a, s in zip(state.arrived, sent, strict=True)]
                return Sample(n, elapsed, latencies)

            async def raw_round(n: int) -> Sample:
                events = make_plain(n)
                raw_consumer.state = state = TimedRound(n)
                subject = subject_for(raw_x, _KEY)

                async def publish(lo: int, hi: int) -> None:
                    futures = [
                        await js.publish_async(
                            subject, _plain_encode(e), headers=raw_headers(raw_x, e)
                        )
                        for e in events[lo:hi]
                    ]
                    for future in futures:
                        await future

                start = _now()
                sent = await produce_batches(n, _E2E_BATCH, in_flight_batches, publish)
                await state.wait()
                elapsed = state.last - start
                latencies = [a - s for a, s in zip(state.arrived, sent, strict=True)]
                return Sample(n, elapsed, latencies)

            count = settings.count(20_000)
            series = await interleaved(
                {"actorbus": actorbus_round, "raw nats-py": raw_round},
                rounds=settings.rounds,
                count=count,
                warmup=count // 10,
                progress=settings.progress,
                label=f"nats.e2e [{loop}]",
            )
    finally:
        await raw_consumer.stop()
        await js.delete_stream(raw_stream)
    return [
        _row(
            "nats.e2e",
            loop,
            series,
            "actorbus",
            "raw nats-py",
            target=0.9,
            note=f"{count} msgs, batches of {_E2E_BATCH}, {window} acks in flight, prefetch "
            f"{prefetch}; raw: fetch({prefetch}) loop; latency = publish → handler",
        )
    ]


# ------------------------------------------------------------------------- FastStream


async def _faststream_consume(
    url: str, stream: str, consumer: str, prefetch: int, n: int
) -> Sample:
    from faststream.nats import JStream, NatsBroker, PullSub

    model = _model()
    counter = Arrivals(n)
    broker = NatsBroker(url, logger=None, log_level=logging.ERROR)

    @broker.subscriber(
        subject_for(_CONSUME_X, _KEY),
        stream=JStream(stream, declare=False),
        durable=consumer,
        pull_sub=PullSub(batch_size=prefetch, timeout=_FETCH_TIMEOUT),
    )
    async def handle(body: model) -> None:  # type: ignore[valid-type]
        counter.hit()

    await broker.start()
    try:
        return await counter.wait(_ROUND_TIMEOUT)
    finally:
        await broker.stop()


async def _faststream_publish(url: str, stream: str, window: int, n: int) -> Sample:
    from faststream.nats import NatsBroker

    model = _model()
    events = [
        model(**msgspec.to_builtins(e, builtin_types=(uuid.UUID, datetime))) for e in make_plain(n)
    ]
    broker = NatsBroker(url, logger=None, log_level=logging.ERROR)
    subject = subject_for(_PUBLISH_X, _KEY)
    await broker.connect()
    try:
        sem = asyncio.Semaphore(window)

        async def one(event: Any) -> None:
            async with sem:
                await broker.publish(
                    event, subject, stream=stream, headers={"Nats-Msg-Id": str(event.event_id)}
                )

        start = _now()
        await asyncio.gather(*[one(e) for e in events])
        elapsed = _now() - start
    finally:
        await broker.stop()
    return Sample(n, elapsed)
