"""The Order service (choreography): takes orders over HTTP and announces them.

``POST /orders`` stores the order and its ``order.created`` (v1, single-line orders only) and
``order.created.v2`` events in one transaction; the outbox relay publishes them. The service
then waits for Inventory's verdict: ``stock.reserved`` confirms the order, ``stock.rejected``
rejects it. It knows nothing of who else reacts to ``order.created``.

``python -m actorbus run services.order`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.frontdoor import announce_front_door
from ..common.store import attach_store
from ..contracts import EXCHANGE
from .handlers import add_handlers
from .http import add_order_routes
from .store import OrderStore

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Order service (one per App: it holds that App's store)."""
    # Its handlers keep a persistent inbox in SQLite, in the transaction of their effect.
    service = Service("order", queue="order.queue", exchange=EXCHANGE, dedupe=False)
    store = attach_store(service, OrderStore, "order.sqlite3")
    add_handlers(service, store)
    add_order_routes(service)
    service.background(announce_front_door)
    return service


#: The Order service, for ``python -m actorbus run services.order``.
service = build()
