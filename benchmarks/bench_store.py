"""The store cases: what durability costs, against a baseline of the same run.

* ``store.frontdoor``: the reference ``POST /orders`` (order + its ``order.created`` v1/v2 in
  one ``ctx.transaction()``, group commit) under 32 concurrent requests, against a bare
  Starlette endpoint that inserts one row per request in SQLite with a COMMIT (fsync) each.
  Both are driven in-process through httpx's ASGI transport, so neither pays for sockets.
* ``store.inbox``: the reference Inventory draining preloaded ``order.created.v2`` from
  RabbitMQ as a durable consumer (inbox claim + stock update + reservation + ``stock.reserved``
  in the outbox, relayed after COMMIT), on SQLite and on PostgreSQL, against a raw aiormq relay
  doing the same decode → publish with confirm → ack, with no state. First to last
  ``stock.reserved`` seen by a probe queue.
* ``flow.reference``: orders/s through Inventory and Notification, on both stores.

PostgreSQL rows start a throwaway :class:`~actorbus.testing.PostgresCluster`; they are skipped
with the reason when the server binaries are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiormq
import aiormq.abc
import anyio
import anyio.to_thread
import msgspec
from pamqp.commands import Basic

from actorbus import App, HandlerContext, Service

from ._common import Settings
from ._stats import Arrivals, CaseResult, Sample, Series, interleaved

__all__ = ("run",)

_now = time.perf_counter
_CONCURRENCY = 32
_EXCHANGE = "orders.topic"
_QUEUE = "inventory.queue"
_PROBE_Q = "bench.store.probe"
_SKU = "ABC"


class _Line(msgspec.Struct):
    sku: str
    qty: int


class _OrderCreatedV2(msgspec.Struct, rename="camel"):
    event_id: str
    order_id: str
    customer_id: str
    items: list[_Line]
    occurred_at: str
    schema_version: int = 2


class _StockReserved(msgspec.Struct, rename="camel"):
    event_id: str
    order_id: str
    items: list[_Line]
    occurred_at: str
    schema_version: int = 1


class _OrderId(msgspec.Struct, rename="camel"):
    order_id: str


_encode = msgspec.json.Encoder().encode
_decode_order = msgspec.json.Decoder(_OrderCreatedV2).decode
_decode_order_id = msgspec.json.Decoder(_OrderId).decode


def _sqlite_url(directory: str, name: str) -> str:
    return f"sqlite:///{(Path(directory) / name).as_posix()}"


@contextlib.asynccontextmanager
async def _postgres() -> AsyncIterator[tuple[str | None, str]]:
    """Yield a throwaway PostgreSQL's URL (or ``None`` and why not)."""
    try:
        from actorbus.testing import PostgresCluster

        cluster = PostgresCluster()
    except Exception as exc:
        yield None, f"no PostgreSQL ({type(exc).__name__}: {exc})"
        return
    try:
        await anyio.to_thread.run_sync(cluster.start)
    except Exception as exc:
        await anyio.to_thread.run_sync(cluster.close)
        yield None, f"PostgreSQL did not start ({type(exc).__name__}: {exc})"
        return
    try:
        yield cluster.url, ""
    finally:
        await anyio.to_thread.run_sync(cluster.close)


async def run(settings: Settings, loop: str, *, only: Sequence[str] = ()) -> list[CaseResult]:
    """Run the store cases on the running event loop (RabbitMQ rows need ``amqp_url``)."""

    def wanted(name: str) -> bool:
        return not only or any(name.startswith(o) or o.startswith(name) for o in only)

    rows: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="actorbus-bench-store-") as tmp:
        if wanted("store.frontdoor"):
            rows.append(await _guard("store.frontdoor", loop, _frontdoor(settings, loop, tmp)))
        url = settings.amqp_url
        if url is None or not (wanted("store.inbox") or wanted("flow")):
            return rows
        async with _postgres() as (pg_url, why_not):
            stores = [("sqlite", _sqlite_url(tmp, "inbox.sqlite3"))]
            if pg_url is not None:
                stores.append(("postgresql", pg_url))
            for name, store in stores:
                if wanted("store.inbox"):
                    coro = _inbox(settings, loop, url, store, name, tmp)
                    rows.append(await _guard("store.inbox", loop, coro))
                if wanted("flow"):
                    coro = _flow(settings, loop, url, _flow_store(store, name, tmp), name, tmp)
                    rows.append(await _guard("flow.reference", loop, coro))
            if pg_url is None:
                for case in ("store.inbox", "flow.reference"):
                    rows.append(
                        CaseResult(case, loop, Series("actorbus (postgresql)"), skipped=why_not)
                    )
    return rows


def _flow_store(store: str, name: str, tmp: str) -> str:
    if name == "sqlite":
        return _sqlite_url(tmp, "flow.sqlite3")
    return store + ("&" if "?" in store else "?") + "schema=bench_flow"


async def _guard(case: str, loop: str, coro: Awaitable[CaseResult]) -> CaseResult:
    try:
        return await coro
    except Exception as exc:
        return CaseResult(case, loop, Series("actorbus"), skipped=f"{type(exc).__name__}: {exc}")


def _services() -> Any:
    return importlib.import_module("services")


# ------------------------------------------------------------------------ front door


def _bare_app(path: Path) -> tuple[Any, Callable[[], None]]:
    """A Starlette ``POST /orders`` doing one durable SQLite insert (own COMMIT) per request."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, body TEXT)")
    lock = threading.Lock()

    def insert(order_id: str, body: str) -> None:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO orders VALUES (?, ?)", (order_id, body))
            conn.execute("COMMIT")

    async def create(request: Request) -> Response:
        body = msgspec.json.decode(await request.body(), type=dict[str, Any])
        order_id = str(uuid.uuid4())
        await anyio.to_thread.run_sync(insert, order_id, msgspec.json.encode(body).decode())
        return Response(
            _encode({"orderId": order_id, "status": "PENDING"}),
            status_code=202,
            media_type="application/json",
        )

    return Starlette(routes=[Route("/orders", create, methods=["POST"])]), conn.close


async def _drive(asgi: Any, n: int) -> Sample:
    import httpx

    body = b'{"sku": "ABC", "qty": 1, "customerId": "bench"}'
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    left = iter(range(n))
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def worker() -> None:
            for _ in left:
                t0 = _now()
                response = await client.post("/orders", content=body, headers=headers)
                if response.status_code != 202:
                    raise RuntimeError(f"POST /orders answered {response.status_code}")
                latencies.append(_now() - t0)

        start = _now()
        async with anyio.create_task_group() as tg:
            for _ in range(_CONCURRENCY):
                tg.start_soon(worker)
        return Sample(n, _now() - start, latencies)


async def _frontdoor(settings: Settings, loop: str, tmp: str) -> CaseResult:
    order = _services().order
    bare, close_bare = _bare_app(Path(tmp) / "bare.sqlite3")
    store = _sqlite_url(tmp, "frontdoor.sqlite3")
    broker = f"memory://bench-frontdoor-{uuid.uuid4().hex}"
    try:
        async with App([order.build()], broker=broker, data_dir=tmp, store=store) as app:
            reference = app.asgi()
            count = settings.count(2_000)
            series = await interleaved(
                {
                    "POST /orders (reference)": lambda n: _drive(reference, n),
                    "bare Starlette + 1 SQLite commit": lambda n: _drive(bare, n),
                },
                rounds=settings.rounds,
                count=count,
                warmup=count // 10,
                progress=settings.progress,
                label=f"store.frontdoor [{loop}]",
            )
    finally:
        close_bare()
    return CaseResult(
        "store.frontdoor",
        loop,
        series["POST /orders (reference)"],
        series["bare Starlette + 1 SQLite commit"],
        target=1.0,
        note=f"{_CONCURRENCY} concurrent requests through httpx's ASGI transport; SQLite "
        "synchronous=FULL both; reference = order + 2 outbox rows in one group-committed tx",
    )


# ---------------------------------------------------------------------- durable inbox


class _Probe:
    """Counts ``stock.reserved`` / ``stock.rejected`` on a queue of its own (no ack)."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.arrivals = Arrivals(0)

    async def start(self) -> None:
        await self.channel.queue_declare(_PROBE_Q, auto_delete=True)
        for key in ("stock.reserved", "stock.rejected"):
            await self.channel.queue_bind(_PROBE_Q, _EXCHANGE, routing_key=key)
        await self.channel.basic_consume(_PROBE_Q, self._on_message, no_ack=True)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        self.arrivals.hit()


class _RawRelay:
    """Raw aiormq: decode order.created.v2, publish stock.reserved with confirm, then ack."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self.tasks: set[asyncio.Task[None]] = set()
        self.tag: str | None = None

    async def start(self, prefetch: int) -> None:
        await self.channel.basic_qos(prefetch_count=prefetch)
        ok = await self.channel.basic_consume(_QUEUE, self._on_message)
        self.tag = ok.consumer_tag

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        task = asyncio.get_running_loop().create_task(self._relay(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _relay(self, message: aiormq.abc.DeliveredMessage) -> None:
        order = _decode_order(message.body)
        event_id = str(uuid.uuid4())
        reply = _StockReserved(
            event_id, order.order_id, order.items, time.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        await self.channel.basic_publish(
            _encode(reply),
            exchange=_EXCHANGE,
            routing_key="stock.reserved",
            properties=Basic.Properties(
                content_type="application/json",
                delivery_mode=2,
                message_id=event_id,
                message_type="stock.reserved",
                correlation_id=order.order_id,
            ),
        )
        await self.channel.basic_ack(message.delivery.delivery_tag)  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.tag is not None:
            await self.channel.basic_cancel(self.tag)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.channel.close()


async def _preload(channel: aiormq.abc.AbstractChannel, n: int, window: int) -> None:
    await channel.queue_purge(_QUEUE)
    sem = asyncio.Semaphore(window)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ")
    run_id = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        event_id = str(uuid.uuid4())
        body = _encode(_OrderCreatedV2(event_id, f"o-{run_id}-{i}", "c-1", [_Line(_SKU, 1)], stamp))
        async with sem:
            await channel.basic_publish(
                body,
                exchange="",
                routing_key=_QUEUE,
                properties=Basic.Properties(
                    content_type="application/json",
                    headers={"x-schema-version": 2},
                    delivery_mode=2,
                    message_id=event_id,
                    message_type="order.created.v2",
                ),
            )

    await asyncio.gather(*[one(i) for i in range(n)])


async def _inbox(
    settings: Settings, loop: str, url: str, store: str, name: str, tmp: str
) -> CaseResult:
    inventory = _services().inventory
    connection = await aiormq.connect(url)
    try:
        admin = await connection.channel()
        await admin.confirm_delivery()
        data_dir = Path(tmp) / f"inbox-{name}"
        # Declare the queue (and run the migrations) once; plenty of stock for every round.
        async with App([inventory.build()], broker=url, data_dir=data_dir, store=store) as app:
            assert app.store is not None
            async with app.store.transaction() as tx:
                await tx.execute("UPDATE stock SET available = ? WHERE sku = ?", 10**9, _SKU)
        probe = _Probe(await connection.channel())
        await probe.start()

        async def durable_round(n: int) -> Sample:
            await _preload(admin, n, settings.confirm_window)
            probe.arrivals = arrivals = Arrivals(n)
            async with App([inventory.build()], broker=url, data_dir=data_dir, store=store):
                return await arrivals.wait()

        async def raw_round(n: int) -> Sample:
            await _preload(admin, n, settings.confirm_window)
            probe.arrivals = arrivals = Arrivals(n)
            channel = await connection.channel()
            await channel.confirm_delivery()
            relay = _RawRelay(channel)
            await relay.start(settings.prefetch)
            try:
                return await arrivals.wait()
            finally:
                await relay.stop()

        count = settings.count(8_000)
        subject = f"Inventory durable ({name})"
        series = await interleaved(
            {subject: durable_round, "raw aiormq relay": raw_round},
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"store.inbox {name} [{loop}]",
        )
    finally:
        await connection.close()
    return CaseResult(
        "store.inbox",
        loop,
        series[subject],
        series["raw aiormq relay"],
        target=0.5 if name == "sqlite" else None,
        note=f"{count} order.created.v2 preloaded, prefetch {settings.prefetch}; durable = "
        "inbox + stock + reservation + outbox, one group commit per batch, relayed after COMMIT",
    )


# ---------------------------------------------------------------------- reference flow


async def _flow(
    settings: Settings, loop: str, url: str, store: str, name: str, tmp: str
) -> CaseResult:
    services = _services()
    contracts = services.contracts
    arrivals = Arrivals(0)
    order_ids: set[str] = set()
    probe = Service("benchprobe", exchange=contracts.EXCHANGE, durable=False)

    async def done(event: Any, ctx: HandlerContext) -> None:
        if event.order_id in order_ids:
            arrivals.hit()

    probe.add_handler(contracts.StockReserved, done)
    probe.add_handler(contracts.StockRejected, done)
    line = contracts.OrderLine(sku=_SKU, qty=1)
    data_dir = Path(tmp) / f"flow-{name}"
    inventory, notification = services.inventory.build(), services.notification.build()

    async with App(
        [inventory, notification, probe], broker=url, data_dir=data_dir, store=store
    ) as app:
        assert app.store is not None
        async with app.store.transaction() as tx:
            await tx.execute("UPDATE stock SET available = ? WHERE sku = ?", 10**9, _SKU)

        async def flow_round(n: int) -> Sample:
            nonlocal arrivals
            order_ids.clear()
            messages: list[Any] = []
            for i in range(n):
                order_id = f"bench-{time.time_ns()}-{i}"
                order_ids.add(order_id)
                messages.append(
                    contracts.OrderCreatedV2(order_id=order_id, customer_id="c-1", items=(line,))
                )
                messages.append(contracts.OrderCreated(order_id=order_id, sku=line.sku, qty=1))
            arrivals = state = Arrivals(n)
            start = _now()
            for lo in range(0, len(messages), 100):
                await asyncio.gather(*[app.publish(m) for m in messages[lo : lo + 100]])
            await state.wait()
            return Sample(n, state.last - start)

        count = settings.count(4_000)
        series = await interleaved(
            {f"actorbus ({name})": flow_round},
            rounds=settings.rounds,
            count=count,
            warmup=count // 10,
            progress=settings.progress,
            label=f"flow.reference {name} [{loop}]",
        )
    return CaseResult(
        "flow.reference",
        loop,
        series[f"actorbus ({name})"],
        note=f"orders/s on the {name} store: order.created (v1+v2) → durable Inventory → "
        "stock.reserved → probe; durable Notification consuming alongside",
    )
