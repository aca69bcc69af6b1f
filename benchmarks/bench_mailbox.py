"""The runtime alone: an actor ``ask`` round trip, and the time to restart a crashed actor.

* ``actor.ask``: sequential ``await ref.ask(i)`` to an echo actor, against a bare request /
  response over two anyio memory object streams between two tasks.
* ``actor.restart``: an actor crashes on a message; the time until its next instance has
  run ``on_start``, under a one-for-one supervisor with a zero backoff (so what is measured
  is the mechanism, not the policy delay). Baseline: a bare task that fails and is started
  again with ``TaskGroup.start`` by a parent loop that caught the error.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.abc

from actorbus.runtime import (
    Actor,
    ActorSystem,
    Backoff,
    ChildSpec,
    RestartStrategy,
    SupervisorSpec,
)

from ._common import Settings
from ._stats import CaseResult, Sample, interleaved

__all__ = ("run",)

_now = time.perf_counter


class _Echo(Actor):
    async def receive(self, message: Any) -> Any:
        return message


class _Crash(Exception):
    """Raised on purpose by the crashing actor."""


class _Crashy(Actor):
    """Crashes on every message; signals each start."""

    def __init__(self, started: list[anyio.Event]) -> None:
        self._started = started

    async def on_start(self) -> None:
        if self._started:
            self._started.pop().set()

    async def receive(self, message: Any) -> None:
        raise _Crash()


async def _ask_actorbus(n: int) -> Sample:
    async with ActorSystem("bench") as system:
        ref = await system.spawn(_Echo, name="echo", mailbox_size=16)
        ask = ref.ask
        latencies = [0.0] * n
        start = _now()
        for i in range(n):
            t0 = _now()
            await ask(i)
            latencies[i] = _now() - t0
        elapsed = _now() - start
    return Sample(n, elapsed, latencies)


async def _ask_bare(n: int) -> Sample:
    req_send, req_recv = anyio.create_memory_object_stream[int](16)
    rep_send, rep_recv = anyio.create_memory_object_stream[int](16)

    async def server() -> None:
        async with req_recv, rep_send:
            async for item in req_recv:
                await rep_send.send(item)

    latencies = [0.0] * n
    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        async with req_send, rep_recv:
            start = _now()
            for i in range(n):
                t0 = _now()
                await req_send.send(i)
                await rep_recv.receive()
                latencies[i] = _now() - t0
            elapsed = _now() - start
    return Sample(n, elapsed, latencies)


async def _restart_actorbus(n: int) -> Sample:
    started: list[anyio.Event] = []
    spec = SupervisorSpec(
        "bench",
        [ChildSpec("crashy", lambda: _Crashy(started), mailbox_size=4)],
        strategy=RestartStrategy.ONE_FOR_ONE,
        max_restarts=n + 10,
        within=3600.0,
        backoff=Backoff(initial=0.0, factor=1.0, jitter=0.0),
    )
    latencies = [0.0] * n
    async with ActorSystem("bench") as system:
        sup = await system.start(spec)
        ref = sup.child("crashy")
        start = _now()
        for i in range(n):
            event = anyio.Event()
            started.append(event)
            t0 = _now()
            ref.tell_nowait("crash")
            await event.wait()
            latencies[i] = _now() - t0
        elapsed = _now() - start
    return Sample(n, elapsed, latencies)


async def _restart_bare(n: int) -> Sample:
    latencies = [0.0] * n

    async def child(*, task_status: anyio.abc.TaskStatus[anyio.Event]) -> None:
        crash = anyio.Event()
        task_status.started(crash)
        await crash.wait()
        raise _Crash()

    async def parent() -> None:
        # A minimal supervisor: run the child in its own task group, catch its failure,
        # start it again and wait until it is ready.
        i = 0
        t0 = 0.0
        while i < n:
            try:
                async with anyio.create_task_group() as tg:
                    crash = await tg.start(child)
                    if t0:
                        latencies[i] = _now() - t0
                        i += 1
                        if i == n:
                            tg.cancel_scope.cancel()
                            return
                    t0 = _now()
                    crash.set()
            except* _Crash:
                pass

    start = _now()
    await parent()
    return Sample(n, _now() - start, latencies)


async def run(settings: Settings, loop: str) -> list[CaseResult]:
    """Measure ask round trips and restarts on the running event loop."""
    results = []
    cases = (
        ("actor.ask", _ask_actorbus, _ask_bare, settings.count(20_000), "anyio streams req/resp"),
        ("actor.restart", _restart_actorbus, _restart_bare, settings.count(2_000), "task restart"),
    )
    for case, subject, baseline, count, base_name in cases:
        series = await interleaved(
            {"actorbus": subject, base_name: baseline},
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"{case} [{loop}]",
        )
        note = (
            "sequential ask(); latency = one round trip"
            if case == "actor.ask"
            else "crash → next instance's on_start, zero backoff; latency = one restart"
        )
        results.append(CaseResult(case, loop, series["actorbus"], series[base_name], note=note))
    return results
