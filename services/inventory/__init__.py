"""The Inventory service: holds stock, reserves it for orders, releases it on compensation.

Choreography: reads ``order.created.v2`` (Inventory has migrated to v2) and publishes
``stock.reserved`` or ``stock.rejected`` through the store's outbox. Orchestration: answers the
``ReserveStock`` and ``ReleaseStock`` commands. Serves ``GET``/``PUT /stock/{sku}``. SKUs
``ABC`` and ``XYZ`` are seeded with 100 each when its tables are created.

``python -m actorbus run services.inventory`` runs it alone; several processes (on several
hosts, sharing one PostgreSQL store) are competing consumers of ``inventory.queue``.
"""

from __future__ import annotations

from actorbus import Service

from ..common.state import migrate_on_start
from ..contracts import (
    EXCHANGE,
    ReleaseStockResult,
    ReserveStockResult,
    StockRejected,
    StockReserved,
)
from .handlers import add_handlers
from .http import add_stock_routes
from .store import INVENTORY_STEPS

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Inventory service (durable: it needs an App with a store)."""
    service = Service("inventory", queue="inventory.queue", exchange=EXCHANGE, durable=True)
    service.declare_publishes(StockReserved, StockRejected, ReserveStockResult, ReleaseStockResult)
    migrate_on_start(service, INVENTORY_STEPS)
    add_handlers(service)
    add_stock_routes(service)
    return service


#: The Inventory service, for ``python -m actorbus run services.inventory``.
service = build()
