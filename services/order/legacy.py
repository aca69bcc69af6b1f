"""The Order state of ``services.orchestrator``: its own SQLite file and outbox (the old way).

Kept only because the orchestrator still builds on it (``OrchestratorStore(OrderStore)``) until
it moves to the saga primitive; the Order service keeps its orders in the App's store
(:mod:`services.order.store`). Delete this module, and ``services.common.db`` /
``outbox`` / ``store``, once nothing imports it.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

import msgspec

from actorbus import Message

from ..common.outbox import enqueue
from ..common.store import ServiceStore
from ..contracts import OrderCreated, OrderCreatedV2, OrderLine
from .store import CONFIRMED, PENDING, REJECTED, IdempotencyConflictError, NewOrder, OrderView

__all__ = ("ORDER_SCHEMA", "OrderStore", "select_order")

ORDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id        TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    items           BLOB NOT NULL,                -- JSON [{"sku", "qty"}]
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    reason          TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
"""

_lines_decoder = msgspec.json.Decoder(tuple[OrderLine, ...])


def _view(row: sqlite3.Row) -> OrderView:
    return OrderView(
        order_id=row["order_id"],
        status=row["status"],
        customer_id=row["customer_id"],
        items=_lines_decoder.decode(row["items"]),
        reason=row["reason"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
    )


def select_order(conn: sqlite3.Connection, order_id: str) -> OrderView | None:
    """Return the order ``order_id`` (in a transaction), or ``None``."""
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else _view(row)


class OrderStore(ServiceStore):
    """Orders, written with their ``order.created`` events in one transaction (outbox).

    Subclasses change what placing an order writes besides the order by overriding
    :meth:`on_created` (the orchestrator starts a saga instead of publishing events).
    """

    schema: ClassVar[str] = ServiceStore.schema + ORDER_SCHEMA
    publishes: ClassVar[tuple[type[Message], ...]] = (OrderCreated, OrderCreatedV2)

    async def create(
        self, new: NewOrder, idempotency_key: str | None = None
    ) -> tuple[OrderView, bool]:
        """Place an order, or return the one an earlier request with the same key placed.

        Returns:
            The order, and whether it was created now (``False``: a retried request).

        Raises:
            IdempotencyConflictError: The key was used before for a different request.
        """
        fingerprint = new.fingerprint()

        def transaction(conn: sqlite3.Connection) -> tuple[OrderView, bool]:
            if idempotency_key is not None:
                row = conn.execute(
                    "SELECT * FROM orders WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    if row["request_hash"] != fingerprint:
                        raise IdempotencyConflictError(idempotency_key, row["order_id"])
                    return _view(row), False
            now = time.time()
            order_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO orders (order_id, customer_id, items, status, idempotency_key, "
                "request_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    new.customer_id,
                    msgspec.json.encode(new.items),
                    PENDING,
                    idempotency_key,
                    fingerprint,
                    now,
                    now,
                ),
            )
            self.on_created(conn, order_id, new)
            view = select_order(conn, order_id)
            if view is None:  # pragma: no cover - inserted just above
                raise RuntimeError(f"order {order_id!r} vanished inside its transaction")
            return view, True

        result = await self.db.write(transaction)
        if result[1]:
            self.relay.notify()
        return result

    def on_created(self, conn: sqlite3.Connection, order_id: str, new: NewOrder) -> None:
        """Write what follows from a new order, in its transaction: here its events.

        ``order.created.v2`` for every order; ``order.created`` (v1) as well when the order
        has one line, since v1 cannot express more.
        """
        enqueue(
            conn,
            OrderCreatedV2(order_id=order_id, customer_id=new.customer_id, items=new.items),
            correlation_id=order_id,
        )
        if len(new.items) == 1:
            (line,) = new.items
            enqueue(
                conn,
                OrderCreated(order_id=order_id, sku=line.sku, qty=line.qty),
                correlation_id=order_id,
            )

    async def get(self, order_id: str) -> OrderView | None:
        """Return the order ``order_id``, or ``None``."""
        return await self.db.read(lambda conn: select_order(conn, order_id))

    @staticmethod
    def settle(
        conn: sqlite3.Connection, order_id: str, status: str, reason: str | None = None
    ) -> bool:
        """Move a ``PENDING`` order to ``status`` (in a transaction); return whether it moved.

        A settled order never changes again: a late or repeated outcome is ignored.
        """
        cursor = conn.execute(
            "UPDATE orders SET status = ?, reason = ?, updated_at = ? "
            "WHERE order_id = ? AND status = 'PENDING'",
            (status, reason, time.time(), order_id),
        )
        return cursor.rowcount == 1

    async def wait_for_status(
        self, order_id: str, statuses: Sequence[str] = (CONFIRMED, REJECTED)
    ) -> OrderView:
        """Wait until the order reaches one of ``statuses``; return it (bound it by a timeout)."""
        found: list[OrderView] = []

        async def check() -> bool:
            view = await self.get(order_id)
            if view is not None and view.status in statuses:
                found.append(view)
                return True
            return False

        await self.wait_until(check)
        return found[-1]
