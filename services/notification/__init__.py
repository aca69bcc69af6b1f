"""The Notification service: records what the customer is told.

Reads ``order.created`` (still v1: it has not migrated to v2) and ``stock.reserved``; answers
``SendConfirmation`` in the orchestrated flow. Serves ``GET /notifications?orderId=…``.

``python -m actorbus run services.notification`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.state import migrate_on_start
from ..contracts import EXCHANGE, SendConfirmationResult
from .handlers import add_handlers
from .http import add_notification_routes
from .store import NOTIFICATION_STEPS

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Notification service (durable: it needs an App with a store)."""
    service = Service("notification", queue="notification.queue", exchange=EXCHANGE, durable=True)
    service.declare_publishes(SendConfirmationResult)
    migrate_on_start(service, NOTIFICATION_STEPS)
    add_handlers(service)
    add_notification_routes(service)
    return service


#: The Notification service, for ``python -m actorbus run services.notification``.
service = build()
