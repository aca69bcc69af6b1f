"""The Shipping service's state: one scheduled shipment per order with reserved stock."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from actorbus.stores import MigrationStep, Store, Transaction

from ..contracts import OrderLine

__all__ = ("SHIPPING_STEPS", "ShipmentView", "get_shipment", "schedule")

#: Shipping's tables (migration namespace ``shipping``): append steps, never edit one.
SHIPPING_STEPS: Final[Sequence[MigrationStep]] = (
    """
    CREATE TABLE shipments (
        order_id     TEXT PRIMARY KEY,
        items        TEXT NOT NULL,               -- JSON [{"sku", "qty"}]
        status       TEXT NOT NULL,
        scheduled_at DOUBLE PRECISION NOT NULL
    )
    """,
)

_lines_decoder = msgspec.json.Decoder(tuple[OrderLine, ...])


class ShipmentView(msgspec.Struct, rename="camel"):
    """A shipment as ``GET /shipments/{orderId}`` shows it."""

    order_id: str
    status: str
    items: tuple[OrderLine, ...]
    scheduled_at: datetime


async def schedule(tx: Transaction, order_id: str, items: Sequence[OrderLine]) -> bool:
    """Schedule the shipment of ``order_id``; ``False`` if it already was."""
    inserted = await tx.execute(
        "INSERT INTO shipments (order_id, items, status, scheduled_at) "
        "VALUES (?, ?, 'SCHEDULED', ?) ON CONFLICT (order_id) DO NOTHING",
        order_id,
        msgspec.json.encode(tuple(items)).decode(),
        time.time(),
    )
    return inserted == 1


async def get_shipment(store: Store, order_id: str) -> ShipmentView | None:
    """Return the shipment of ``order_id``, or ``None``."""
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "SELECT order_id, items, status, scheduled_at FROM shipments WHERE order_id = ?",
            order_id,
        )
    if row is None:
        return None
    items: Any = row["items"]
    return ShipmentView(
        order_id=row["order_id"],
        status=row["status"],
        items=_lines_decoder.decode(items),
        scheduled_at=datetime.fromtimestamp(row["scheduled_at"], UTC),
    )
