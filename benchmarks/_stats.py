"""Rounds, medians and percentiles; the result records that the table and JSON are made of."""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = (
    "Arrivals",
    "CaseResult",
    "Progress",
    "Sample",
    "Series",
    "interleaved",
    "interleaved_sync",
    "percentile",
)

Kind = Literal["throughput", "cost"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One round of one variant: how many messages, how long, and optional latencies.

    Attributes:
        count: Messages processed in the round.
        seconds: Wall-clock time they took.
        latencies: Per-message latencies in seconds, if the case measures them.
    """

    count: int
    seconds: float
    latencies: Sequence[float] = ()

    @property
    def rate(self) -> float:
        """Messages per second in this round."""
        return self.count / self.seconds if self.seconds > 0 else math.inf


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values`` by linear interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(slots=True)
class Series:
    """All rounds of one variant of a case (``actorbus``, ``raw aiormq``, ``aio-pika``...)."""

    name: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """Messages per second of each round."""
        return [s.rate for s in self.samples]

    @property
    def median(self) -> float:
        """Median messages per second over the rounds."""
        return statistics.median(self.rates) if self.samples else math.nan

    @property
    def low(self) -> float:
        """Slowest round, in messages per second."""
        return min(self.rates) if self.samples else math.nan

    @property
    def high(self) -> float:
        """Fastest round, in messages per second."""
        return max(self.rates) if self.samples else math.nan

    @property
    def latencies(self) -> list[float]:
        """Every latency of every round, pooled."""
        return [lat for s in self.samples for lat in s.latencies]

    def latency(self, q: float) -> float | None:
        """The ``q``-th latency percentile in seconds, or ``None`` if none was measured."""
        pooled = self.latencies
        return percentile(pooled, q) if pooled else None

    def to_json(self) -> dict[str, Any]:
        """Return the series as a JSON-ready dict (rates in msg/s, latencies in ms)."""
        if not self.samples:
            return {"name": self.name, "rounds": []}
        p50 = self.latency(50)
        p99 = self.latency(99)
        return {
            "name": self.name,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "rounds": self.rates,
            "p50_ms": p50 * 1e3 if p50 is not None else None,
            "p99_ms": p99 * 1e3 if p99 is not None else None,
        }


@dataclass(slots=True)
class CaseResult:
    """One row of the report: a subject measured against a baseline of the same run.

    For ``throughput`` cases the ratio is subject/baseline messages per second (higher is
    better). For ``cost`` cases (per-message CPU cost, e.g. the codec) it is subject/baseline
    time per message (lower is better). Both are the median of the per-round ratios, since
    rounds are interleaved (subject and baseline run back to back); that cancels most of the
    drift of a shared machine.

    Attributes:
        case: The case's name, e.g. ``"amqp.consume"``.
        loop: ``"uvloop"``, ``"asyncio"`` or ``"-"`` for synchronous cases.
        subject: What is measured (actorbus, or a peer library).
        baseline: The same-run baseline, or ``None``.
        kind: ``throughput`` or ``cost``.
        target: The target ratio (a floor for throughput, a ceiling for cost), if any.
        note: Anything the reader should know about this row.
        skipped: Why the case did not run, if it did not.
    """

    case: str
    loop: str
    subject: Series
    baseline: Series | None = None
    kind: Kind = "throughput"
    target: float | None = None
    note: str = ""
    skipped: str | None = None

    @property
    def ratio(self) -> float | None:
        """The median per-round ratio (see the class docstring); ``None`` without baseline."""
        base = self.baseline
        if base is None or not base.samples or not self.subject.samples:
            return None
        pairs = list(zip(self.subject.rates, base.rates, strict=False))
        if self.kind == "throughput":
            ratios = [s / b for s, b in pairs if b > 0]
        else:
            ratios = [b / s for s, b in pairs if s > 0]
        return statistics.median(ratios) if ratios else None

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the target; ``None`` when there is no target or ratio."""
        ratio = self.ratio
        if self.target is None or ratio is None:
            return None
        return ratio >= self.target if self.kind == "throughput" else ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return {
            "case": self.case,
            "loop": self.loop,
            "kind": self.kind,
            "better": "higher" if self.kind == "throughput" else "lower",
            "subject": self.subject.to_json(),
            "baseline": self.baseline.to_json() if self.baseline is not None else None,
            "ratio": self.ratio,
            "target": self.target,
            "target_met": self.met,
            "note": self.note,
            "skipped": self.skipped,
        }


class Progress:
    """Plain progress lines on stderr, each stamped with the seconds since the start."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.start = time.perf_counter()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        """Print ``message`` with the elapsed time."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def _order(names: Sequence[str], index: int) -> list[str]:
    # Rotate the order each round so that no variant always runs first (warm caches,
    # a broker that just finished a purge) or last.
    k = index % len(names)
    return [*names[k:], *names[:k]]


async def interleaved(
    variants: Mapping[str, Callable[[int], Awaitable[Sample]]],
    *,
    rounds: int,
    count: int,
    warmup: int,
    progress: Progress,
    label: str,
) -> dict[str, Series]:
    """Run async variants for ``rounds`` rounds, interleaved, after one warm-up round each.

    Args:
        variants: Name → ``run(count) -> Sample``.
        rounds: Measured rounds per variant.
        count: Messages per measured round.
        warmup: Messages in the warm-up round (not recorded); 0 for none.
        progress: Where progress lines go.
        label: The case's name, for progress lines.

    Returns:
        Name → its series of samples.
    """
    names = list(variants)
    series = {name: Series(name) for name in names}
    if warmup:
        for name in names:
            await variants[name](warmup)
    for i in range(rounds):
        for name in _order(names, i):
            sample = await variants[name](count)
            series[name].samples.append(sample)
            progress(f"{label}: round {i + 1}/{rounds} {name}: {sample.rate:,.0f} msg/s")
    return series


def interleaved_sync(
    variants: Mapping[str, Callable[[int], Sample]],
    *,
    rounds: int,
    count: int,
    warmup: int,
    progress: Progress,
    label: str,
) -> dict[str, Series]:
    """The synchronous twin of :func:`interleaved` (for the codec)."""
    names = list(variants)
    series = {name: Series(name) for name in names}
    if warmup:
        for name in names:
            variants[name](warmup)
    for i in range(rounds):
        for name in _order(names, i):
            sample = variants[name](count)
            series[name].samples.append(sample)
        progress(
            f"{label}: round {i + 1}/{rounds} "
            + ", ".join(
                f"{n} {series[n].samples[-1].seconds / count * 1e9:.0f} ns/msg" for n in names
            )
        )
    return series


class Arrivals:
    """Counts what one round produced: how many arrived, the first and the last arrival.

    ``hit()`` is called once per arrival (from a handler or a raw consumer callback); the
    round is done when ``expected`` arrived. The sample is ``expected - 1`` messages over
    first → last arrival, so start-up and the first message's latency are not counted.
    """

    __slots__ = ("count", "done", "expected", "first", "last")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = anyio.Event()

    def hit(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        if self.count == self.expected:
            self.last = now
            self.done.set()

    async def wait(self, timeout: float = 120.0) -> Sample:
        """Wait until every expected message arrived; return the round's sample."""
        with anyio.fail_after(timeout):
            await self.done.wait()
        return Sample(self.expected - 1, self.last - self.first)


class TimedRound:
    """Arrival times of one round, for consumers whose callbacks run on the asyncio loop.

    ``hit(index)`` records message ``index``'s arrival (its latency is arrival minus its
    publish time); the round is done when ``expected`` arrived. An ``asyncio.Event``, not
    anyio's: the raw aiormq and nats-py callbacks it times run on the loop directly.
    """

    __slots__ = ("arrived", "count", "done", "expected", "first", "last")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.arrived = [0.0] * expected
        self.done = asyncio.Event()

    def hit(self, index: int) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.arrived[index] = now
        self.count += 1
        if self.count == self.expected:
            self.last = now
            self.done.set()

    async def wait(self, timeout: float = 120.0) -> None:
        """Wait until every expected message arrived."""
        async with asyncio.timeout(timeout):
            await self.done.wait()

    def consume_sample(self) -> Sample:
        """``expected - 1`` messages over first → last arrival."""
        return Sample(self.expected - 1, self.last - self.first)


async def produce_batches(
    n: int,
    size: int,
    in_flight: int,
    publish_batch: Callable[[int, int], Awaitable[None]],
) -> list[float]:
    """Publish messages ``0 … n-1`` in batches of ``size``, ``in_flight`` batches at a time.

    ``publish_batch(lo, hi)`` publishes messages ``lo … hi-1`` and returns once they are
    confirmed. Returns each message's send time (its batch's start), for latencies.
    """
    sent = [0.0] * n
    room = asyncio.Semaphore(in_flight)

    async def batch(lo: int, hi: int) -> None:
        try:
            t0 = time.perf_counter()
            for i in range(lo, hi):
                sent[i] = t0
            await publish_batch(lo, hi)
        finally:
            room.release()

    async with asyncio.TaskGroup() as tg:
        for lo in range(0, n, size):
            await room.acquire()
            tg.create_task(batch(lo, min(n, lo + size)))
    return sent
