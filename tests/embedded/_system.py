"""The reference system on its defaults: processes, a mixed order workload, file checks.

:class:`DefaultRun` is ``python -m actorbus run TARGET --data-dir DIR --http 127.0.0.1:0``
with no broker and no store flag, so the process runs on its defaults: the durable embedded
broker ``sqlite:///DIR/broker.sqlite3`` and the store ``sqlite:///DIR/store.sqlite3``. The
bound address is read from the ``actorbus_ready`` log line of each incarnation (a restart
may get another port).

:class:`MixedOrders` places single-line orders for SKUs with plenty of stock, with little
stock and with none, each with an ``Idempotency-Key`` (retried through a crash: a retried
POST returns the same order), then checks from outside that every order answered ``202``
settled, that each SKU's stock went down by exactly the quantities of its confirmed orders
and that no notification was sent twice.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ..faults._harness import ServicesProcess

__all__ = ("DefaultRun", "MixedOrders", "Outcome", "integrity")

#: SKU → the stock it starts with: plenty, a little (it runs out mid-stream), none.
STOCK: Mapping[str, int] = {"PLENTY": 100_000, "SCARCE": 40, "NONE": 0}


class DefaultRun(ServicesProcess):
    """``python -m actorbus run TARGET --data-dir DIR --http 127.0.0.1:0``: every default.

    Args:
        tg: The task group that drains the process's output.
        target: What to run, e.g. ``"services"`` or ``"services.inventory"``.
        data_dir: The data directory (its broker and store files are the defaults).
        extra: More command-line arguments (e.g. ``--metrics 127.0.0.1:0``).
        name: Shown in failure messages.
    """

    def __init__(
        self,
        tg: TaskGroup,
        target: str,
        *,
        data_dir: Path,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            tg, target, broker="(default)", data_dir=data_dir, http=False,
            env={"ORDER_FLOW": "choreography", **(env or {})}, name=name,
        )  # fmt: skip
        self.extra = list(extra)
        self.url: str | None = None

    @property
    def base_url(self) -> str:
        """The front door's base URL of the current incarnation."""
        if self.url is None:
            raise RuntimeError(f"{self.name} is not ready")
        return self.url

    @property
    def broker_file(self) -> Path:
        """The default broker file of the data directory."""
        return self.data_dir / "broker.sqlite3"

    @property
    def store_file(self) -> Path:
        """The default store file of the data directory."""
        return self.data_dir / "store.sqlite3"

    def command(self) -> list[str]:
        """The command line: no ``--broker``, no ``--store``."""
        return [
            *super().command()[:5], "--http", "127.0.0.1:0", "--data-dir", str(self.data_dir),
            *self.extra,
        ]  # fmt: skip

    def ready_record(self) -> dict[str, Any]:
        """The ``actorbus_ready`` record of the current incarnation."""
        for line in reversed(self.log.lines):
            if '"actorbus_ready"' in line:
                record: dict[str, Any] = json.loads(line)
                return record
        raise RuntimeError(f"{self.name} logged no actorbus_ready")

    async def start(self, timeout: float = 30.0) -> None:
        """Start (again), wait for the ready line and read the bound address from it."""
        self.url = None
        await super().start(timeout)
        self.url = str(self.ready_record()["http"])


def integrity(path: Path) -> str:
    """Open ``path`` as SQLite (recovering its WAL) and return ``PRAGMA integrity_check``."""
    connection = sqlite3.connect(path, timeout=10)
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    return "; ".join(str(row[0]) for row in rows)


@dataclass
class Outcome:
    """What a case observed from outside: counts, and every problem found."""

    accepted: int = 0
    confirmed: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One summary line."""
        return (
            f"accepted={self.accepted} confirmed={self.confirmed} rejected={self.rejected} "
            f"problems={len(self.problems)}"
        )


class MixedOrders:
    """Places orders over :data:`STOCK`'s SKUs through ``front_door()`` and checks them.

    Args:
        front_door: Returns the base URL to use now (it may change across a restart).
        stock_door: The same for ``/stock`` (by default ``front_door``).
        seed: Seed of the SKU and quantity choices.
        retry_for: How long one request is retried through an outage, in seconds.
    """

    def __init__(
        self,
        front_door: Callable[[], str],
        *,
        stock_door: Callable[[], str] | None = None,
        seed: int = 16,
        retry_for: float = 40.0,
    ) -> None:
        self.front_door = front_door
        self.stock_door = stock_door or front_door
        self.random = random.Random(seed)
        self.retry_for = retry_for
        #: Order id → (sku, qty) of every order answered 202.
        self.orders: dict[str, tuple[str, int]] = {}
        self.placed = 0
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))

    async def __aenter__(self) -> MixedOrders:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    async def request(
        self, method: str, path: str, *, door: Callable[[], str] | None = None,
        ok: tuple[int, ...] = (200,), **kwargs: Any,
    ) -> httpx.Response:  # fmt: skip
        """Send a request, retrying transport errors and 5xx answers for ``retry_for`` s."""
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                base = (door or self.front_door)()
                response = await self._client.request(method, f"{base}{path}", **kwargs)
                if response.status_code in ok:
                    return response
                if response.status_code < 500:
                    raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
                problem = f"{response.status_code} {response.text[:200]}"
            except (httpx.TransportError, RuntimeError) as exc:  # RuntimeError: not ready yet
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing for {self.retry_for:g} s: "
                                     f"{problem}")  # fmt: skip
            await anyio.sleep(0.05)

    async def set_stock(self) -> None:
        """``PUT /stock/{sku}`` for every SKU of :data:`STOCK`."""
        for sku, available in STOCK.items():
            await self.request(
                "PUT", f"/stock/{sku}", door=self.stock_door, json={"available": available}
            )

    async def stock(self, sku: str) -> int:
        """``GET /stock/{sku}``'s ``available``."""
        response = await self.request("GET", f"/stock/{sku}", door=self.stock_door)
        return int(response.json()["available"])

    async def place(self, index: int) -> None:
        """Place order ``index`` (a seeded SKU and quantity), retried with its key."""
        sku = self.random.choices(list(STOCK), weights=(6, 3, 1))[0]
        qty = self.random.randint(1, 3)
        key = f"embedded-{index}"
        response = await self.request(
            "POST", "/orders", ok=(202,), json={"sku": sku, "qty": qty, "customerId": key},
            headers={"Idempotency-Key": key},
        )  # fmt: skip
        self.orders[str(response.json()["orderId"])] = (sku, qty)

    async def place_all(
        self,
        count: int,
        *,
        concurrency: int = 8,
        at: Mapping[int, Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        """Place ``count`` orders, ``concurrency`` at a time.

        Args:
            count: How many orders.
            concurrency: Orders in flight at once.
            at: Faults: ``{n: action}`` starts ``action()`` in the background once ``n``
                orders were accepted.
        """
        pending = iter(range(self.placed, self.placed + count))
        self.placed += count
        actions = dict(at or {})

        async def worker(tg: TaskGroup) -> None:
            for index in pending:
                await self.place(index)
                for threshold in [n for n in actions if n <= len(self.orders)]:
                    tg.start_soon(actions.pop(threshold))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, tg)

    async def settle(self, timeout: float) -> dict[str, str]:
        """Poll ``GET /orders/{id}`` until every order settled or ``timeout`` s passed.

        Returns:
            Order id → the last status seen (``PENDING`` for those that never settled).
        """
        status = dict.fromkeys(self.orders, "PENDING")
        deadline = time.monotonic() + timeout
        while True:
            for oid in [oid for oid, s in status.items() if s == "PENDING"]:
                try:
                    response = await self._client.get(f"{self.front_door()}/orders/{oid}")
                except (httpx.TransportError, RuntimeError):
                    continue
                if response.status_code == 200:
                    status[oid] = str(response.json()["status"])
            if "PENDING" not in status.values() or time.monotonic() > deadline:
                return status
            await anyio.sleep(0.2)

    async def notifications(self, order_id: str) -> Counter[str]:
        """Count the notifications sent for ``order_id`` by kind."""
        response = await self.request("GET", "/notifications", params={"orderId": order_id})
        return Counter(n["kind"] for n in response.json()["notifications"])

    async def verify(self, *, settle_timeout: float = 60.0) -> Outcome:
        """Settle every order, then check stock and notifications; return what was seen.

        The default ``settle_timeout`` outlasts the outbox relay's 30 s lease: rows a killed
        relay had claimed are published again when a relay on this host sees its process gone
        (within seconds), or, failing that, when their lease runs out.
        """
        outcome = Outcome(accepted=len(self.orders))
        status = await self.settle(settle_timeout)
        pending = [oid for oid, s in status.items() if s not in ("CONFIRMED", "REJECTED")]
        if pending:
            outcome.problems.append(f"{len(pending)} orders never settled, e.g. {pending[:3]}")
        outcome.confirmed = sum(s == "CONFIRMED" for s in status.values())
        outcome.rejected = sum(s == "REJECTED" for s in status.values())
        for sku, start in STOCK.items():
            taken = sum(q for oid, (s, q) in self.orders.items()
                        if s == sku and status[oid] == "CONFIRMED")  # fmt: skip
            available = await self.stock(sku)
            if available != start - taken:
                outcome.problems.append(
                    f"stock of {sku}: {available}, expected {start} - {taken} = {start - taken}"
                )
        # Every single-line order gets "order_received" (Notification reads order.created v1);
        # a confirmed one also "stock_reserved", a little after it was confirmed.
        deadline = time.monotonic() + 15
        for oid, state in status.items():
            expected = Counter(order_received=1)
            if state == "CONFIRMED":
                expected["stock_reserved"] = 1
            while True:
                seen = await self.notifications(oid)
                if seen == expected or any(n > 1 for n in seen.values()):
                    break
                if time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
            if seen != expected:
                outcome.problems.append(f"notifications of {oid} ({state}): {dict(seen)}")
        return outcome
