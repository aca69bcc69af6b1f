"""The Notification service: records what the customer is told.

Reads ``order.created`` (still v1: it has not migrated to v2) and ``stock.reserved``; answers
``SendConfirmation`` in the orchestrated flow. Serves ``GET /notifications?orderId=…``.

``python -m actorbus run services.notification`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.store import attach_store
from ..contracts import EXCHANGE, SendConfirmationResult
from .handlers import add_handlers
from .http import add_notification_routes
from .store import NotificationStore

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Notification service (one per App: it holds that App's store)."""
    # Its handlers keep a persistent inbox in SQLite, in the transaction of their effect.
    service = Service("notification", queue="notification.queue", exchange=EXCHANGE, dedupe=False)
    store = attach_store(service, NotificationStore, "notification.sqlite3")
    service.declare_publishes(SendConfirmationResult)
    add_handlers(service, store)
    add_notification_routes(service)
    return service


#: The Notification service, for ``python -m actorbus run services.notification``.
service = build()
