"""Helpers for the reference system's end-to-end tests: run services, talk HTTP, await state.

The services keep their state in the App's store (SQLite in the test's directory), the
orchestrator's saga instances included.
Nothing here sleeps for a fixed time: waits re-check their condition on the memory broker's
change notifications (a message queued or settled) under ``anyio.fail_after``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from actorbus import App, Saga, Service
from actorbus.brokers import Broker
from actorbus.messages import Envelope
from actorbus.stores import Row, Store
from tests.stores._postgres_fixture import postgres_url as postgres_url

#: Upper bound of any wait in these tests; they finish in milliseconds when things work.
WAIT = 15.0

# A backstop for the change notification (it can fire between a check and the wait).
_RECHECK = 0.05


def store_url(data_dir: Path) -> str:
    """The store the tests give the App: one SQLite file in the data directory."""
    return f"sqlite:///{(data_dir / 'store.sqlite3').as_posix()}"


#: The store ``running`` gives an App when the test names none; ``store_matrix`` sets it.
_default_store: Callable[[Path], str] = store_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_matrix(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per store: SQLite in its directory, then its own PostgreSQL schema.

    A module opts in with ``pytest.mark.usefixtures("store_matrix")``; ``running`` then uses
    the store of the current parameter when the test passes none.
    """
    global _default_store
    if request.param == "postgresql":
        base = request.getfixturevalue("postgres_url")
        separator = "&" if "?" in base else "?"
        schema = f"it_{uuid.uuid4().hex[:10]}"
        _default_store = lambda _data_dir: f"{base}{separator}schema={schema}"  # noqa: E731
    try:
        yield str(request.param)
    finally:
        _default_store = store_url


class System:
    """A running App plus an HTTP client on its ASGI front door."""

    def __init__(self, app: App, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def app_store(self) -> Store:
        """The App's store, where the services keep their tables."""
        assert self.app.store is not None
        return self.app.store

    def saga(self, service: str = "orchestrator") -> Saga[Any]:
        """The saga that ``service`` runs (the orchestrator's order saga by default)."""
        (saga,) = self.app.contexts[service].service.sagas
        return saga

    async def query(self, sql: str, *args: object) -> list[Row]:
        """Run a query on the App's store."""
        async with self.app_store.transaction() as tx:
            return await tx.fetchall(sql, *args)

    async def outbox(self) -> list[Envelope]:
        """The envelopes written to the App's outbox (sent or not), oldest first."""
        rows = await self.query("SELECT envelope FROM actorbus_outbox ORDER BY id")
        return [msgspec.msgpack.decode(bytes(row["envelope"]), type=Envelope) for row in rows]

    async def unsent(self) -> int:
        """How many outbox rows are not published yet."""
        return await self.app_store.outbox.pending()

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
        """Return once ``check()`` is true, re-checking whenever the broker's state changes."""
        changed: Callable[[], Awaitable[None]] | None = getattr(
            self.app.broker, "wait_for_change", None
        )
        with anyio.fail_after(timeout):
            while not await check():
                with anyio.move_on_after(_RECHECK):
                    if changed is not None:
                        await changed()
                    else:  # a network broker: nothing to wait on but time
                        await anyio.sleep(_RECHECK)

    async def wait_for_rows(self, sql: str, *args: object, count: int = 1) -> None:
        """Wait until ``sql`` returns at least ``count`` rows from the App's store."""

        async def check() -> bool:
            return len(await self.query(sql, *args)) >= count

        await self.wait_until(check)

    async def place(self, body: dict[str, Any], **headers: str) -> str:
        """``POST /orders``; assert ``202 PENDING``; return the order id."""
        response = await self.client.post("/orders", json=body, headers=headers)
        assert response.status_code == 202, response.text
        payload = response.json()
        assert payload["status"] in ("PENDING", "CONFIRMED", "REJECTED")
        return str(payload["orderId"])

    async def settled(self, order_id: str, timeout: float = WAIT) -> dict[str, Any]:
        """Wait until the order is CONFIRMED or REJECTED; return ``GET /orders/{id}``."""
        found: dict[str, Any] = {}

        async def check() -> bool:
            response = await self.client.get(f"/orders/{order_id}")
            assert response.status_code == 200, response.text
            found.update(response.json())
            return found["status"] in ("CONFIRMED", "REJECTED")

        await self.wait_until(check, timeout)
        return found

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
async def running(
    services: Sequence[Service],
    data_dir: Path,
    *,
    broker: str | Broker = "memory://",
    store: str | None = None,
) -> AsyncIterator[System]:
    """Run ``services`` on a fresh memory broker with their store under ``data_dir``.

    ``store`` replaces the SQLite file under ``data_dir`` (e.g. a PostgreSQL URL).
    """
    url = _default_store(data_dir) if store is None else store
    async with App(services, broker=broker, data_dir=data_dir, store=url) as app:
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield System(app, client)
