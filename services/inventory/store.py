"""The Inventory service's state: stock levels and one reservation per order.

Stock never goes negative: every change runs in the service's single writer transaction,
reservation is all-or-nothing, the decrement is conditional (``available >= qty``) and the
table has a ``CHECK (available >= 0)`` as the last line of defence.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import ClassVar, Final, NamedTuple

import msgspec

from actorbus import Message

from ..common.store import ServiceStore
from ..contracts import OrderLine, StockRejected, StockReserved

__all__ = ("INVENTORY_SCHEMA", "SEED_STOCK", "InventoryStore", "Reservation", "StockLevel")

#: Stock put in an empty database on first start, so that a first order works.
SEED_STOCK: Final = {"ABC": 100, "XYZ": 100}

INVENTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku        TEXT PRIMARY KEY,
    available  INTEGER NOT NULL CHECK (available >= 0),
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED')),
    reason     TEXT,
    items      BLOB NOT NULL,                 -- JSON [{"sku", "qty"}] held (RESERVED)
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class Reservation(NamedTuple):
    """The outcome of reserving an order's stock."""

    reserved: bool
    reason: str
    items: tuple[OrderLine, ...]


class StockLevel(msgspec.Struct, rename="camel"):
    """What ``GET /stock/{sku}`` shows."""

    sku: str
    available: int


_encode = msgspec.json.encode


class InventoryStore(ServiceStore):
    """Stock and reservations, with the inbox and the outbox of stock.reserved/rejected."""

    schema: ClassVar[str] = ServiceStore.schema + INVENTORY_SCHEMA
    publishes: ClassVar[tuple[type[Message], ...]] = (StockReserved, StockRejected)

    def on_open(self, conn: sqlite3.Connection) -> None:
        """Seed :data:`SEED_STOCK` the first time the database is opened."""
        if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is None:
            now = time.time()
            conn.executemany(
                "INSERT OR IGNORE INTO stock (sku, available, updated_at) VALUES (?, ?, ?)",
                [(sku, qty, now) for sku, qty in SEED_STOCK.items()],
            )
            conn.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (str(now),))

    @staticmethod
    def reserve(conn: sqlite3.Connection, order_id: str, items: Sequence[OrderLine]) -> Reservation:
        """Reserve every line of ``order_id`` or none (in a transaction).

        An order is reserved at most once: asking again returns the first outcome. An order
        whose stock was released (or that was cancelled before it reserved) is refused.
        """
        known = conn.execute(
            "SELECT status, reason FROM reservations WHERE order_id = ?", (order_id,)
        ).fetchone()
        if known is not None:
            if known["status"] == "RESERVED":
                return Reservation(True, "", tuple(items))
            if known["status"] == "RELEASED":
                return Reservation(False, "the order was cancelled; its stock was released", ())
            return Reservation(False, known["reason"] or "rejected", ())
        reason = ""
        for line in items:
            row = conn.execute("SELECT available FROM stock WHERE sku = ?", (line.sku,)).fetchone()
            if row is None:
                reason = f"unknown SKU {line.sku!r}"
                break
            if row["available"] < line.qty:
                reason = (
                    f"not enough stock of {line.sku!r}: {line.qty} requested, "
                    f"{row['available']} available"
                )
                break
        now = time.time()
        if reason:
            conn.execute(
                "INSERT INTO reservations (order_id, status, reason, items, updated_at) "
                "VALUES (?, 'REJECTED', ?, '[]', ?)",
                (order_id, reason, now),
            )
            return Reservation(False, reason, ())
        for line in items:
            cursor = conn.execute(
                "UPDATE stock SET available = available - ?, updated_at = ? "
                "WHERE sku = ? AND available >= ?",
                (line.qty, now, line.sku, line.qty),
            )
            if cursor.rowcount != 1:  # pragma: no cover - checked above, single writer
                raise RuntimeError(f"stock of {line.sku!r} changed under a reservation")
        conn.execute(
            "INSERT INTO reservations (order_id, status, items, updated_at) "
            "VALUES (?, 'RESERVED', ?, ?)",
            (order_id, _encode(tuple(items)), now),
        )
        return Reservation(True, "", tuple(items))

    @staticmethod
    def release(conn: sqlite3.Connection, order_id: str, reason: str) -> bool:
        """Give back what ``order_id`` holds (in a transaction); return whether anything was.

        Releasing an order that reserved nothing leaves a ``RELEASED`` tombstone, so that a
        reservation request arriving late is refused.
        """
        known = conn.execute(
            "SELECT status, items FROM reservations WHERE order_id = ?", (order_id,)
        ).fetchone()
        now = time.time()
        if known is None:
            conn.execute(
                "INSERT INTO reservations (order_id, status, reason, items, updated_at) "
                "VALUES (?, 'RELEASED', ?, '[]', ?)",
                (order_id, reason, now),
            )
            return False
        if known["status"] != "RESERVED":
            return False
        for line in msgspec.json.decode(known["items"], type=tuple[OrderLine, ...]):
            conn.execute(
                "UPDATE stock SET available = available + ?, updated_at = ? WHERE sku = ?",
                (line.qty, now, line.sku),
            )
        conn.execute(
            "UPDATE reservations SET status = 'RELEASED', reason = ?, updated_at = ? "
            "WHERE order_id = ?",
            (reason, now, order_id),
        )
        return True

    async def get_stock(self, sku: str) -> StockLevel | None:
        """Return the stock level of ``sku``, or ``None`` if it is unknown."""

        def query(conn: sqlite3.Connection) -> StockLevel | None:
            row = conn.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
            return None if row is None else StockLevel(sku, row["available"])

        return await self.db.read(query)

    async def set_stock(self, sku: str, available: int) -> StockLevel:
        """Set the stock level of ``sku`` (creating it); reservations already held stay held."""

        def update(conn: sqlite3.Connection) -> StockLevel:
            conn.execute(
                "INSERT INTO stock (sku, available, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (sku) DO UPDATE SET available = excluded.available, "
                "updated_at = excluded.updated_at",
                (sku, available, time.time()),
            )
            return StockLevel(sku, available)

        return await self.db.write(update)
