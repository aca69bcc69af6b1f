"""Helpers for the reference system's end-to-end tests: run services, talk HTTP, await state.

Nothing here sleeps for a fixed time: tests wait on the stores' change notifications
(``ServiceStore.wait_until``) under ``anyio.fail_after``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx

from actorbus import App, Service
from services.common.store import ServiceStore
from services.order.store import OrderStore

S = TypeVar("S", bound=ServiceStore)

#: Upper bound of any wait in these tests; they finish in milliseconds when things work.
WAIT = 15.0


class System:
    """A running App plus an HTTP client on its ASGI front door."""

    def __init__(self, app: App, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    def store(self, service: str, store_type: type[S]) -> S:
        """Return the store of ``service`` (checked against ``store_type``)."""
        store = self.app.contexts[service].state["store"]
        assert isinstance(store, store_type)
        return store

    @property
    def orders(self) -> OrderStore:
        """The order store of whichever of Order / orchestrator runs."""
        name = "order" if "order" in self.app.contexts else "orchestrator"
        return self.store(name, OrderStore)

    async def place(self, body: dict[str, Any], **headers: str) -> str:
        """``POST /orders``; assert ``202 PENDING``; return the order id."""
        response = await self.client.post("/orders", json=body, headers=headers)
        assert response.status_code == 202, response.text
        payload = response.json()
        assert payload["status"] in ("PENDING", "CONFIRMED", "REJECTED")
        return str(payload["orderId"])

    async def settled(self, order_id: str) -> dict[str, Any]:
        """Wait until the order is CONFIRMED or REJECTED; return ``GET /orders/{id}``."""
        with anyio.fail_after(WAIT):
            await self.orders.wait_for_status(order_id)
        response = await self.client.get(f"/orders/{order_id}")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    async def stock(self, sku: str) -> int:
        """``GET /stock/{sku}``'s ``available``."""
        response = await self.client.get(f"/stock/{sku}")
        assert response.status_code == 200, response.text
        return int(response.json()["available"])

    async def notifications(self, order_id: str) -> list[str]:
        """The kinds of the notifications sent for ``order_id``."""
        response = await self.client.get("/notifications", params={"orderId": order_id})
        assert response.status_code == 200
        return [n["kind"] for n in response.json()["notifications"]]


@contextlib.asynccontextmanager
async def running(services: Sequence[Service], data_dir: Path) -> AsyncIterator[System]:
    """Run ``services`` on a fresh memory broker with state under ``data_dir``."""
    async with App(services, broker="memory://", data_dir=data_dir) as app:
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield System(app, client)


async def query(store: ServiceStore, sql: str, *args: object) -> list[sqlite3.Row]:
    """Run a read-only query on a service's database."""
    return await store.db.read(lambda conn: conn.execute(sql, args).fetchall())


async def wait_for_rows(store: ServiceStore, sql: str, *args: object, count: int = 1) -> None:
    """Wait until ``sql`` returns at least ``count`` rows."""

    async def check() -> bool:
        return len(await query(store, sql, *args)) >= count

    with anyio.fail_after(WAIT):
        await store.wait_until(check)
