"""The Shipping service: schedules a shipment for every order whose stock was reserved.

Reads ``stock.reserved``. Serves ``GET /shipments/{orderId}``.

``python -m actorbus run services.shipping`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.state import migrate_on_start
from ..contracts import EXCHANGE
from .handlers import add_handlers
from .http import add_shipment_routes
from .store import SHIPPING_STEPS

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Shipping service (durable: it needs an App with a store)."""
    service = Service("shipping", queue="shipping.queue", exchange=EXCHANGE, durable=True)
    migrate_on_start(service, SHIPPING_STEPS)
    add_handlers(service)
    add_shipment_routes(service)
    return service


#: The Shipping service, for ``python -m actorbus run services.shipping``.
service = build()
