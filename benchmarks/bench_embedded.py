"""The durable embedded broker (``sqlite://``) against ``memory://`` and RabbitMQ, same run.

* ``embedded.pipeline``: the delivery core of :mod:`bench_memory`'s ``memory.pipeline`` (an
  App with ``metrics=False, tracing=False`` and ``Service(dedupe=False)``: publish → route →
  mailbox → decode → handler → ack) on each broker. Publishes are awaited by
  :data:`_WINDOW` concurrent tasks, not one at a time: a durable broker confirms a publish
  after its commit, and concurrent publishers share commits (group commit), as a front door's
  requests do. Latency = ``publish`` called → handler entered.
* ``embedded.pipeline.2proc``: the same with the consumer in a second process
  (``python -m benchmarks.bench_embedded consume URL NAME``) sharing the broker file (or the
  RabbitMQ server); it reports each arrival on its stdout. ``time.perf_counter`` is
  ``CLOCK_MONOTONIC`` on Linux, the same clock in both processes.
* ``embedded.flow``: ``flow.reference`` (see :mod:`bench_store`) on each broker: orders/s of
  ``order.created`` (v1+v2) → durable Inventory (SQLite store) → ``stock.reserved`` → probe,
  with durable Notification consuming alongside.
* ``embedded.flow.2proc``: the same plus a second Inventory process
  (``python -m actorbus run services.inventory --http off``) sharing the broker and the
  store files: two competing consumers of ``inventory.queue``.

Each row compares ``sqlite://`` with a baseline of the same interleaved rounds: ``memory://``
(one process only: it cannot be shared) and RabbitMQ (when the run has one).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

from actorbus import App, HandlerContext, Service

from ._common import OrderCreated, Settings, make_events
from ._stats import CaseResult, Sample, Series, interleaved

__all__ = ("run",)

_now = time.perf_counter
_WINDOW = 32
_ROUND_TIMEOUT = 120.0
_REPO = Path(__file__).resolve().parents[1]
_SKU = "ABC"

Round = Callable[[int], Awaitable[Sample]]


class _Round:
    """Arrival times of one round and its completion event."""

    __slots__ = ("arrived", "count", "done", "expected", "first", "last")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.arrived = [0.0] * expected
        self.first = 0.0
        self.last = 0.0
        self.done = anyio.Event()

    def hit(self, index: int, at: float) -> None:
        if 0 <= index < self.expected:
            self.arrived[index] = at
        if not self.count:
            self.first = at
        self.count += 1
        if self.count == self.expected:
            self.last = at
            self.done.set()

    async def wait(self) -> None:
        with anyio.fail_after(_ROUND_TIMEOUT):
            await self.done.wait()


def _core_service(name: str, current: Callable[[], _Round]) -> Service:
    svc = Service(name, exchange=f"{name}.events", prefetch=256, dedupe=False)

    @svc.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        current().hit(event.qty, _now())

    return svc


async def _publish_windowed(
    publish: Callable[[Any], Awaitable[None]], events: list[Any], sent: list[float] | None
) -> None:
    """Publish ``events`` from :data:`_WINDOW` tasks, each awaiting one publish at a time."""
    pending = iter(range(len(events)))

    async def worker() -> None:
        for i in pending:
            if sent is not None:
                sent[i] = _now()
            await publish(events[i])

    async with anyio.create_task_group() as tg:
        for _ in range(_WINDOW):
            tg.start_soon(worker)


def _pipeline_round(publish: Callable[[Any], Awaitable[None]], state_box: list[_Round]) -> Round:
    async def run_round(n: int) -> Sample:
        state_box[0] = state = _Round(n)
        events = make_events(n)
        sent = [0.0] * n
        start = _now()
        await _publish_windowed(publish, events, sent)
        await state.wait()
        elapsed = _now() - start
        return Sample(n, elapsed, [a - s for a, s in zip(state.arrived, sent, strict=True)])

    return run_round


# ---------------------------------------------------------------- the second process


async def _read_lines(process: Process, on_line: Callable[[str], None]) -> None:
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            on_line(line.decode())


@contextlib.asynccontextmanager
async def _child(
    args: list[str],
    ready: str | None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> AsyncIterator[Process]:
    """Run ``python ARGS`` until the block ends; wait for a stdout (or stderr) ``ready`` line."""
    seen = anyio.Event()

    def line(text: str) -> None:
        if ready is not None and ready in text:
            seen.set()
        elif on_line is not None:
            on_line(text)

    environment = {**os.environ, "PYTHONPATH": str(_REPO), **(env or {})}
    process = await anyio.open_process(
        [sys.executable, *args], cwd=_REPO, env=environment, stderr=-1, stdout=-1
    )
    async with anyio.create_task_group() as tg:
        assert process.stderr is not None
        tg.start_soon(_read_lines, process, line)
        tail: list[str] = []

        async def drain_stderr() -> None:
            assert process.stderr is not None
            async for chunk in process.stderr:
                text = chunk.decode(errors="replace")
                tail.append(text)
                del tail[:-20]
                if ready is not None and ready in text:
                    seen.set()

        tg.start_soon(drain_stderr)
        try:
            with anyio.fail_after(60):
                while not seen.is_set():
                    if process.returncode is not None:
                        raise RuntimeError(f"{args} exited: {''.join(tail)[-1500:]}")
                    with anyio.move_on_after(0.2):
                        await seen.wait()
            yield process
        finally:
            if process.returncode is None:
                process.terminate()
                with anyio.move_on_after(15):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            tg.cancel_scope.cancel()


async def _consume(url: str, name: str) -> None:
    """The consumer of ``embedded.pipeline.2proc``: print ``qty perf_counter`` per event."""
    import logging

    import structlog

    # stdout carries the arrivals: library log lines go to stderr, errors only.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    out = sys.stdout
    svc = Service(name, exchange=f"{name}.events", prefetch=256, dedupe=False)

    @svc.on(OrderCreated)
    async def handle(event: OrderCreated, ctx: HandlerContext) -> None:
        out.write(f"{event.qty} {_now()!r}\n")
        out.flush()

    with tempfile.TemporaryDirectory(prefix="actorbus-bench-consumer-") as data_dir:
        async with App([svc], broker=url, data_dir=data_dir, metrics=False, tracing=False):
            out.write("consumer-ready\n")
            out.flush()
            await anyio.sleep_forever()


# ------------------------------------------------------------------------- pipeline


async def _pipeline(settings: Settings, loop: str, tmp: str) -> list[CaseResult]:
    brokers = {"memory://": "memory://", "sqlite://": f"sqlite:///{tmp}/pipeline.sqlite3"}
    if settings.amqp_url is not None:
        brokers["amqp://"] = settings.amqp_url
    variants: dict[str, Round] = {}
    async with contextlib.AsyncExitStack() as stack:
        for label, url in brokers.items():
            box = [_Round(0)]
            name = f"embcore{uuid.uuid4().hex[:6]}"
            app = App(
                [_core_service(name, lambda box=box: box[0])],  # type: ignore[misc]
                broker=url,
                data_dir=Path(tmp) / name,
                metrics=False,
                tracing=False,
            )
            await stack.enter_async_context(app)
            variants[label] = _pipeline_round(app.publish, box)
        for label, url in brokers.items():
            if label == "memory://":
                continue
            if label == "sqlite://":
                url = f"sqlite:///{tmp}/pipeline-2proc.sqlite3"
            box = [_Round(0)]
            name = f"emb2p{uuid.uuid4().hex[:6]}"

            def arrival(line: str, box: list[_Round] = box) -> None:
                qty, _, at = line.partition(" ")
                if qty.isdigit():
                    box[0].hit(int(qty), float(at))

            await stack.enter_async_context(
                _child(
                    ["-m", "benchmarks.bench_embedded", "consume", url, name, loop],
                    "consumer-ready",
                    on_line=arrival,
                )
            )
            app = App(
                [],
                broker=url,
                data_dir=Path(tmp) / name,
                metrics=False,
                tracing=False,
                exchange=f"{name}.events",
            )
            await stack.enter_async_context(app)
            variants[f"{label} 2 proc"] = _pipeline_round(app.publish, box)
        count = settings.count(4_000)
        series = await interleaved(
            variants,
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"embedded.pipeline [{loop}]",
        )
    note = (
        f"publish→route→mailbox→decode→handler→ack, {_WINDOW} concurrent publishers, "
        "prefetch 256, delivery core (metrics, tracing, dedupe off); latency = publish "
        "call → handler"
    )
    return _rows("embedded.pipeline", loop, series, note)


def _rows(case: str, loop: str, series: dict[str, Series], note: str) -> list[CaseResult]:
    """sqlite:// against memory:// and amqp://, one process; 2 processes against amqp://."""
    rows = []
    sqlite = series["sqlite://"]
    rows.append(CaseResult(case, loop, sqlite, series["memory://"], note=note))
    amqp = series.get("amqp://")
    if amqp is not None:
        rows.append(CaseResult(case, loop, sqlite, amqp, note=note))
    two = series.get("sqlite:// 2 proc")
    if two is not None:
        amqp_two = series.get("amqp:// 2 proc")
        rows.append(
            CaseResult(
                f"{case}.2proc",
                loop,
                two,
                amqp_two or sqlite,
                note=note + "; consumer in a second process",
            )
        )
    if amqp is None:
        rows.append(CaseResult(case, loop, Series("amqp://"), skipped="no RabbitMQ in this run"))
    return rows


# ----------------------------------------------------------------------------- flow


async def _flow(settings: Settings, loop: str, tmp: str) -> list[CaseResult]:
    """Two groups of interleaved rounds: one process (memory, sqlite, amqp), then two.

    The reference queues have fixed names, so the one- and two-process RabbitMQ variants
    cannot be alive at once on one vhost; each row compares variants of one group.
    """
    brokers = {"memory://": "memory://", "sqlite://": "sqlite"}
    if settings.amqp_url is not None:
        brokers["amqp://"] = settings.amqp_url
    series: dict[str, Series] = {}
    for two in (False, True):
        plans = [(label, url) for label, url in brokers.items() if not two or label != "memory://"]
        series |= await _flow_group(settings, loop, tmp, plans, two=two)
    note = (
        "orders/s: order.created (v1+v2) → durable Inventory (SQLite store) → "
        "stock.reserved → probe, durable Notification alongside"
    )
    return _rows("embedded.flow", loop, series, note)


async def _flow_group(
    settings: Settings, loop: str, tmp: str, plans: list[tuple[str, str]], *, two: bool
) -> dict[str, Series]:
    services = importlib.import_module("services")
    contracts = services.contracts
    line = contracts.OrderLine(sku=_SKU, qty=1)
    variants: dict[str, Round] = {}
    async with contextlib.AsyncExitStack() as stack:
        for label, url in plans:
            slug = f"{label.rstrip(':/')}{'-2proc' if two else ''}"
            data_dir = Path(tmp) / f"flow-{slug}"
            data_dir.mkdir(parents=True)
            store = f"sqlite:///{data_dir / 'store.sqlite3'}"
            if url == "sqlite":
                url = f"sqlite:///{data_dir / 'broker.sqlite3'}"
            box = [_Round(0)]
            order_ids: set[str] = set()
            probe = Service(
                f"benchprobe{slug.replace('-', '')}", exchange=contracts.EXCHANGE, durable=False
            )

            async def done(
                event: Any, ctx: HandlerContext, box: list[_Round] = box, ids: set[str] = order_ids
            ) -> None:
                if event.order_id in ids:
                    box[0].hit(-1, _now())

            probe.add_handler(contracts.StockReserved, done)
            probe.add_handler(contracts.StockRejected, done)
            app = App(
                [services.inventory.build(), services.notification.build(), probe],
                broker=url,
                data_dir=data_dir,
                store=store,
                metrics=False,
                tracing=False,
            )
            await stack.enter_async_context(app)
            if app.store is None:
                raise RuntimeError("the flow needs the App's store")
            async with app.store.transaction() as tx:
                await tx.execute("UPDATE stock SET available = ? WHERE sku = ?", 10**9, _SKU)
            if two:
                await stack.enter_async_context(
                    _child(
                        [
                            "-m",
                            "actorbus",
                            "run",
                            "services.inventory",
                            "--broker",
                            url,
                            "--store",
                            store,
                            "--http",
                            "off",
                            "--data-dir",
                            str(data_dir),
                        ],
                        "actorbus_ready",
                        env={"ACTORBUS_LOG_LEVEL": "info", "ACTORBUS_LOG_FORMAT": "json"},
                    )
                )
            variants[f"{label} 2 proc" if two else label] = _flow_round(
                app, contracts, line, box, order_ids
            )
        count = settings.count(1_200)
        return await interleaved(
            variants,
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"embedded.flow{'.2proc' if two else ''} [{loop}]",
        )


def _flow_round(
    app: App, contracts: Any, line: Any, box: list[_Round], order_ids: set[str]
) -> Round:
    async def flow_round(n: int) -> Sample:
        order_ids.clear()
        messages: list[Any] = []
        for i in range(n):
            order_id = f"bench-{time.time_ns()}-{i}"
            order_ids.add(order_id)
            messages.append(
                contracts.OrderCreatedV2(order_id=order_id, customer_id="c-1", items=(line,))
            )
            messages.append(contracts.OrderCreated(order_id=order_id, sku=line.sku, qty=1))
        box[0] = state = _Round(n)
        start = _now()
        await _publish_windowed(app.publish, messages, None)
        await state.wait()
        return Sample(n, state.last - start)

    return flow_round


# ------------------------------------------------------------------------------ run


async def run(settings: Settings, loop: str) -> list[CaseResult]:
    """Run the embedded-broker cases on the running event loop."""
    rows: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="actorbus-bench-embedded-") as tmp:
        for case, coro in (("embedded.pipeline", _pipeline), ("embedded.flow", _flow)):
            try:
                rows.extend(await coro(settings, loop, tmp))
            except Exception as exc:
                rows.append(
                    CaseResult(
                        case, loop, Series("sqlite://"), skipped=f"{type(exc).__name__}: {exc}"
                    )
                )
    return rows


def _main(argv: list[str]) -> None:
    """``consume URL NAME LOOP``: the second process of ``embedded.pipeline.2proc``."""
    if len(argv) != 4 or argv[0] != "consume":
        raise SystemExit("usage: python -m benchmarks.bench_embedded consume URL NAME LOOP")
    _, url, name, loop = argv
    anyio.run(
        _consume, url, name, backend="asyncio", backend_options={"use_uvloop": loop == "uvloop"}
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
