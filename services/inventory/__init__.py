"""The Inventory service: holds stock, reserves it for orders, releases it on compensation.

Choreography: reads ``order.created.v2`` (Inventory has migrated to v2) and publishes
``stock.reserved`` or ``stock.rejected`` through its outbox. Orchestration: answers the
``ReserveStock`` and ``ReleaseStock`` commands. Serves ``GET``/``PUT /stock/{sku}``.

``python -m actorbus run services.inventory`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.store import attach_store
from ..contracts import EXCHANGE, ReleaseStockResult, ReserveStockResult
from .handlers import add_handlers
from .http import add_stock_routes
from .store import InventoryStore

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Inventory service (one per App: it holds that App's store)."""
    # Its handlers keep a persistent inbox in SQLite, in the transaction of their effect.
    service = Service("inventory", queue="inventory.queue", exchange=EXCHANGE, dedupe=False)
    store = attach_store(service, InventoryStore, "inventory.sqlite3")
    service.declare_publishes(ReserveStockResult, ReleaseStockResult)
    add_handlers(service, store)
    add_stock_routes(service)
    return service


#: The Inventory service, for ``python -m actorbus run services.inventory``.
service = build()
