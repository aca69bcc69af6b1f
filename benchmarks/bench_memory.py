"""In-process: memory-broker publish → actor handler → ack, against a bare anyio hop.

actorbus side: a real :class:`~actorbus.App` with one :class:`~actorbus.Service` on
``memory://``. A producer task awaits ``app.publish(event)`` for each event (encode,
envelope, route, confirm); the service's consumer actor decodes it, checks the inbox, runs
the handler, records the inbox and acks. Baseline: the producer ``await send.send(event)``
on an anyio memory object stream (buffer = the service's prefetch) and a consumer task
receives it. Both record the same timestamps (publish start, handler entry) for latency.
"""

from __future__ import annotations

import tempfile
import time

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
    """Measure the memory-broker pipeline against a bare memory-object-stream hop."""
    prefetch = settings.prefetch
    current = _Round(0)

    service = Service("bench", exchange="bench.events", prefetch=prefetch)

    @service.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        state = current
        state.arrived[event.qty] = _now()
        state.count += 1
        if state.count == state.expected:
            state.done.set()

    with tempfile.TemporaryDirectory(prefix="actorbus-bench-") as data_dir:
        async with App([service], broker="memory://", data_dir=data_dir) as app:
            publish = app.publish

            async def actorbus_round(n: int) -> Sample:
                nonlocal current
                events = make_events(n)
                sent = [0.0] * n
                current = state = _Round(n)
                start = _now()
                for i, event in enumerate(events):
                    sent[i] = _now()
                    await publish(event)
                await state.done.wait()
                elapsed = _now() - start
                return Sample(n, elapsed, [a - s for a, s in zip(state.arrived, sent, strict=True)])

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

            count = settings.count(40_000)
            series = await interleaved(
                {"actorbus": actorbus_round, "anyio stream hop": bare_round},
                rounds=settings.rounds,
                count=count,
                warmup=count // 10,
                progress=settings.progress,
                label=f"memory.pipeline [{loop}]",
            )
    return [
        CaseResult(
            "memory.pipeline",
            loop,
            series["actorbus"],
            series["anyio stream hop"],
            target=_TARGET,
            note=f"publish→decode→handler→ack on memory://, prefetch {prefetch}; "
            "latency = publish call → handler",
        )
    ]
