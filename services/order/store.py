"""The Order service's state: orders, their idempotency keys, and the outbox of order.created."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar, Final

import msgspec

from actorbus import Message

from ..common.outbox import enqueue
from ..common.store import ServiceStore
from ..contracts import OrderCreated, OrderCreatedV2, OrderLine

__all__ = (
    "CONFIRMED",
    "ORDER_SCHEMA",
    "PENDING",
    "REJECTED",
    "IdempotencyConflictError",
    "NewOrder",
    "OrderStore",
    "OrderView",
)

PENDING: Final = "PENDING"
CONFIRMED: Final = "CONFIRMED"
REJECTED: Final = "REJECTED"

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


class NewOrder(msgspec.Struct, frozen=True):
    """A validated order request: who orders what (lines with distinct SKUs)."""

    customer_id: str
    items: tuple[OrderLine, ...]

    def fingerprint(self) -> str:
        """Return a hash of the request, to tell a retry from a reuse of an idempotency key."""
        return hashlib.sha256(msgspec.json.encode(self)).hexdigest()


class OrderView(msgspec.Struct, rename="camel"):
    """An order as ``GET /orders/{orderId}`` shows it."""

    order_id: str
    status: str
    customer_id: str
    items: tuple[OrderLine, ...]
    reason: str | None
    created_at: datetime
    updated_at: datetime


class IdempotencyConflictError(Exception):
    """An ``Idempotency-Key`` was reused for a different request."""

    def __init__(self, key: str, order_id: str) -> None:
        self.key = key
        self.order_id = order_id
        super().__init__(
            f"Idempotency-Key {key!r} was already used for order {order_id!r} with a different "
            "request; use a new key for a new order"
        )


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
