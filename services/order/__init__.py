"""The Order service (choreography): takes orders over HTTP and announces them.

``POST /orders`` stores the order and its ``order.created`` (v1, single-line orders only) and
``order.created.v2`` events in one transaction of the App's store; the App's outbox relay
publishes them. The service then waits for Inventory's verdict: ``stock.reserved`` confirms the
order, ``stock.rejected`` rejects it. It knows nothing of who else reacts to ``order.created``.

``python -m actorbus run services.order`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.frontdoor import announce_front_door
from ..common.state import migrate_on_start
from ..contracts import EXCHANGE, OrderCreated, OrderCreatedV2
from .handlers import add_handlers
from .http import add_order_routes
from .store import ORDER_STEPS

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Order service (durable: it needs an App with a store)."""
    service = Service("order", queue="order.queue", exchange=EXCHANGE, durable=True)
    service.declare_publishes(OrderCreated, OrderCreatedV2)
    migrate_on_start(service, ORDER_STEPS)
    add_handlers(service)
    add_order_routes(service)
    service.background(announce_front_door)
    return service


#: The Order service, for ``python -m actorbus run services.order``.
service = build()
