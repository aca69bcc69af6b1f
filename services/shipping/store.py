"""The Shipping service's state: one scheduled shipment per order with reserved stock."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import ClassVar

import msgspec

from ..common.store import ServiceStore
from ..contracts import OrderLine

__all__ = ("SHIPPING_SCHEMA", "ShipmentView", "ShippingStore")

SHIPPING_SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    order_id     TEXT PRIMARY KEY,
    items        BLOB NOT NULL,
    status       TEXT NOT NULL,
    scheduled_at REAL NOT NULL
);
"""


class ShipmentView(msgspec.Struct, rename="camel"):
    """A shipment as ``GET /shipments/{orderId}`` shows it."""

    order_id: str
    status: str
    items: tuple[OrderLine, ...]
    scheduled_at: datetime


class ShippingStore(ServiceStore):
    """Shipments, recorded with the inbox row of the event that scheduled them."""

    schema: ClassVar[str] = ServiceStore.schema + SHIPPING_SCHEMA

    @staticmethod
    def schedule(conn: sqlite3.Connection, order_id: str, items: Sequence[OrderLine]) -> bool:
        """Schedule the shipment of ``order_id`` (in a transaction); ``False`` if it already was."""
        cursor = conn.execute(
            "INSERT OR IGNORE INTO shipments (order_id, items, status, scheduled_at) "
            "VALUES (?, ?, 'SCHEDULED', ?)",
            (order_id, msgspec.json.encode(tuple(items)), time.time()),
        )
        return cursor.rowcount == 1

    async def get(self, order_id: str) -> ShipmentView | None:
        """Return the shipment of ``order_id``, or ``None``."""

        def query(conn: sqlite3.Connection) -> ShipmentView | None:
            row = conn.execute("SELECT * FROM shipments WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                return None
            return ShipmentView(
                order_id=row["order_id"],
                status=row["status"],
                items=msgspec.json.decode(row["items"], type=tuple[OrderLine, ...]),
                scheduled_at=datetime.fromtimestamp(row["scheduled_at"], UTC),
            )

        return await self.db.read(query)
