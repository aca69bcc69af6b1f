"""The Inventory service's state: stock levels and one reservation per order, in the App's store.

Stock never goes negative, whichever process of the service (on whichever host) reserves:
every decrement is a conditional ``UPDATE … WHERE available >= qty`` (atomic in the database;
on PostgreSQL the row stays locked until the COMMIT), a reservation that cannot take every line
gives back the lines it took in the same transaction (all or nothing), and the table has a
``CHECK (available >= 0)`` as the last line of defence.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import msgspec

from actorbus.stores import MigrationStep, Store, Transaction

from ..contracts import OrderLine

__all__ = (
    "INVENTORY_STEPS",
    "SEED_STOCK",
    "Reservation",
    "StockLevel",
    "get_stock",
    "release",
    "reserve",
    "set_stock",
)

#: Stock put in an empty database on first start, so that a first order works.
SEED_STOCK: Final = {"ABC": 100, "XYZ": 100}


async def _seed(tx: Transaction) -> None:
    """Migration step: seed :data:`SEED_STOCK` (once: a step runs once per database)."""
    now = time.time()
    for sku, qty in SEED_STOCK.items():
        await tx.execute(
            "INSERT INTO stock (sku, available, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (sku) DO NOTHING",
            sku,
            qty,
            now,
        )


#: Inventory's tables (migration namespace ``inventory``): append steps, never edit one.
INVENTORY_STEPS: Final[Sequence[MigrationStep]] = (
    """
    CREATE TABLE stock (
        sku        TEXT PRIMARY KEY,
        available  INTEGER NOT NULL CHECK (available >= 0),
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE reservations (
        order_id   TEXT PRIMARY KEY,
        status     TEXT NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED')),
        reason     TEXT,
        items      TEXT NOT NULL,                 -- JSON [{"sku", "qty"}] held (RESERVED)
        updated_at DOUBLE PRECISION NOT NULL
    )
    """,
    _seed,
)


class Reservation(NamedTuple):
    """The outcome of reserving an order's stock."""

    reserved: bool
    reason: str
    items: tuple[OrderLine, ...]


class StockLevel(msgspec.Struct, rename="camel"):
    """What ``GET /stock/{sku}`` shows."""

    sku: str
    available: int


_lines_decoder = msgspec.json.Decoder(tuple[OrderLine, ...])


def _encode_lines(items: Sequence[OrderLine]) -> str:
    return msgspec.json.encode(tuple(items)).decode()


async def _shortfall(tx: Transaction, line: OrderLine) -> str:
    """Why ``line`` could not be taken (read after its conditional UPDATE changed nothing)."""
    available = await tx.fetchval("SELECT available FROM stock WHERE sku = ?", line.sku)
    if available is None:
        return f"unknown SKU {line.sku!r}"
    return f"not enough stock of {line.sku!r}: {line.qty} requested, {available} available"


async def reserve(tx: Transaction, order_id: str, items: Sequence[OrderLine]) -> Reservation:
    """Reserve every line of ``order_id`` or none.

    An order is reserved at most once: asking again returns the first outcome. An order whose
    stock was released (or that was cancelled before it reserved) is refused.
    """
    known = await tx.fetchone(
        "SELECT status, reason FROM reservations WHERE order_id = ?", order_id
    )
    if known is not None:
        if known["status"] == "RESERVED":
            return Reservation(True, "", tuple(items))
        if known["status"] == "RELEASED":
            return Reservation(False, "the order was cancelled; its stock was released", ())
        return Reservation(False, known["reason"] or "rejected", ())
    now = time.time()
    taken: list[OrderLine] = []
    reason = ""
    for line in items:
        changed = await tx.execute(
            "UPDATE stock SET available = available - ?, updated_at = ? "
            "WHERE sku = ? AND available >= ?",
            line.qty,
            now,
            line.sku,
            line.qty,
        )
        if changed != 1:
            reason = await _shortfall(tx, line)
            break
        taken.append(line)
    if reason:
        for line in taken:  # all or nothing: give back what this order took
            await _give_back(tx, line, now)
        await tx.execute(
            "INSERT INTO reservations (order_id, status, reason, items, updated_at) "
            "VALUES (?, 'REJECTED', ?, '[]', ?)",
            order_id,
            reason,
            now,
        )
        return Reservation(False, reason, ())
    await tx.execute(
        "INSERT INTO reservations (order_id, status, items, updated_at) "
        "VALUES (?, 'RESERVED', ?, ?)",
        order_id,
        _encode_lines(items),
        now,
    )
    return Reservation(True, "", tuple(items))


async def _give_back(tx: Transaction, line: OrderLine, now: float) -> None:
    await tx.execute(
        "UPDATE stock SET available = available + ?, updated_at = ? WHERE sku = ?",
        line.qty,
        now,
        line.sku,
    )


async def release(tx: Transaction, order_id: str, reason: str) -> bool:
    """Give back what ``order_id`` holds; return whether anything was.

    Releasing an order that reserved nothing leaves a ``RELEASED`` tombstone, so that a
    reservation request arriving late is refused.
    """
    known = await tx.fetchone("SELECT status, items FROM reservations WHERE order_id = ?", order_id)
    now = time.time()
    if known is None:
        await tx.execute(
            "INSERT INTO reservations (order_id, status, reason, items, updated_at) "
            "VALUES (?, 'RELEASED', ?, '[]', ?)",
            order_id,
            reason,
            now,
        )
        return False
    if known["status"] != "RESERVED":
        return False
    held: Any = known["items"]
    for line in _lines_decoder.decode(held):
        await _give_back(tx, line, now)
    await tx.execute(
        "UPDATE reservations SET status = 'RELEASED', reason = ?, updated_at = ? "
        "WHERE order_id = ?",
        reason,
        now,
        order_id,
    )
    return True


async def get_stock(store: Store, sku: str) -> StockLevel | None:
    """Return the stock level of ``sku``, or ``None`` if it is unknown."""
    async with store.transaction() as tx:
        available = await tx.fetchval("SELECT available FROM stock WHERE sku = ?", sku)
    return None if available is None else StockLevel(sku, int(available))


async def set_stock(store: Store, sku: str, available: int) -> StockLevel:
    """Set the stock level of ``sku`` (creating it); reservations already held stay held."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO stock (sku, available, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (sku) DO UPDATE SET available = excluded.available, "
            "updated_at = excluded.updated_at",
            sku,
            available,
            time.time(),
        )
    return StockLevel(sku, available)
