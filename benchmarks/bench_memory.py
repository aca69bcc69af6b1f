"""In-process: memory-broker publish → actor handler → ack, against a bare anyio hop.

actorbus side: a real :class:`~actorbus.App` with one :class:`~actorbus.Service` on
``memory://``. A producer task awaits ``app.publish(event)`` for each event (encode,
envelope, route, confirm); the service's consumer actor decodes it, runs the handler and
acks. Baseline: the producer ``await send.send(event)`` on an anyio memory object stream
(buffer = the service's prefetch) and a consumer task receives it. Both record the same
timestamps (publish start, handler entry) for latency.

Two actorbus rows, measured in the same interleaved rounds against the same baseline:

* ``memory.pipeline``: the delivery core, which the target is judged on: an App with
  ``metrics=False, tracing=False`` and ``Service(dedupe=False)``, so publish → route →
  mailbox → decode → handler → ack and nothing else;
* ``memory.pipeline.defaults``: the App's defaults, which add Prometheus counters and
  latency histograms, W3C trace context on every message and the in-memory idempotency
  inbox: the difference between the rows is what those features cost per message
  (benchmarks/PROFILE.md breaks it down).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable

import anyio

from actorbus import App, HandlerContext, Service

from ._common import OrderCreated, Settings, make_events
from ._stats import CaseResult, Sample, interleaved

__all__ = ("run",)

_TARGET = 1.0
_now = time.perf_counter


class _Round:
    """What the handler of one round writes: arrival times and the completion event."""

    __slots__ = ("arrived", "count", "done", "expected")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.arrived = [0.0] * expected
        self.done = anyio.Event()


async def run(settings: Settings, loop: str) -> list[CaseResult]:
    """Measure the memory-broker pipeline (the core and the defaults) against a bare hop."""
    prefetch = settings.prefetch
    current = _Round(0)

    def service(name: str, *, dedupe: bool) -> Service:
        svc = Service(name, exchange=f"{name}.events", prefetch=prefetch, dedupe=dedupe)

        @svc.on(OrderCreated)
        async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
            state = current
            state.arrived[event.qty] = _now()
            state.count += 1
            if state.count == state.expected:
                state.done.set()

        return svc

    def actorbus_round(app: App) -> Callable[[int], Awaitable[Sample]]:
        publish = app.publish

        async def run_round(n: int) -> Sample:
            nonlocal current
            current = state = _Round(n)
            events = make_events(n)
            sent = [0.0] * n
            start = _now()
            for i, event in enumerate(events):
                sent[i] = _now()
                await publish(event)
            await state.done.wait()
            elapsed = _now() - start
            latencies = [a - s for a, s in zip(state.arrived, sent, strict=True)]
            return Sample(n, elapsed, latencies)

        return run_round

    async def bare_round(n: int) -> Sample:
        events = make_events(n)
        sent = [0.0] * n
        state = _Round(n)
        send, receive = anyio.create_memory_object_stream[OrderCreated](prefetch)

        async def consumer() -> None:
            async with receive:
                async for event in receive:
                    state.arrived[event.qty] = _now()
                    state.count += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            start = _now()
            async with send:
                for i, event in enumerate(events):
                    sent[i] = _now()
                    await send.send(event)
        elapsed = _now() - start
        return Sample(n, elapsed, [a - s for a, s in zip(state.arrived, sent, strict=True)])

    with tempfile.TemporaryDirectory(prefix="actorbus-bench-") as data_dir:
        default_app = App([service("defaults", dedupe=True)], broker="memory://", data_dir=data_dir)
        core_app = App(
            [service("core", dedupe=False)],
            broker="memory://",
            data_dir=data_dir,
            metrics=False,
            tracing=False,
        )
        async with default_app, core_app:
            count = settings.count(40_000)
            series = await interleaved(
                {
                    "actorbus": actorbus_round(core_app),
                    "actorbus defaults": actorbus_round(default_app),
                    "anyio stream hop": bare_round,
                },
                rounds=settings.rounds,
                count=count,
                warmup=count // 10,
                progress=settings.progress,
                label=f"memory.pipeline [{loop}]",
            )
    hop = series["anyio stream hop"]
    return [
        CaseResult(
            "memory.pipeline",
            loop,
            series["actorbus"],
            hop,
            target=_TARGET,
            note=f"publish→route→mailbox→decode→handler→ack on memory://, prefetch {prefetch}: "
            "the delivery core (metrics=False, tracing=False, dedupe=False); latency = publish "
            "call → handler",
        ),
        CaseResult(
            "memory.pipeline.defaults",
            loop,
            series["actorbus defaults"],
            hop,
            note="the same with the App's defaults: metrics, W3C trace context, in-memory "
            "inbox (no target; the difference to the row above is what they cost)",
        ),
    ]
