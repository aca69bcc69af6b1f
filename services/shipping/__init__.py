"""The Shipping service: schedules a shipment for every order whose stock was reserved.

Reads ``stock.reserved``. Serves ``GET /shipments/{orderId}``.

``python -m actorbus run services.shipping`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.store import attach_store
from ..contracts import EXCHANGE
from .handlers import add_handlers
from .http import add_shipment_routes
from .store import ShippingStore

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Shipping service (one per App: it holds that App's store)."""
    # Its handlers keep a persistent inbox in SQLite, in the transaction of their effect.
    service = Service("shipping", queue="shipping.queue", exchange=EXCHANGE, dedupe=False)
    store = attach_store(service, ShippingStore, "shipping.sqlite3")
    add_handlers(service, store)
    add_shipment_routes(service)
    return service


#: The Shipping service, for ``python -m actorbus run services.shipping``.
service = build()
