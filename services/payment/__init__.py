"""The Payment service (orchestration): charges orders and refunds them on compensation.

Answers ``ChargePayment`` (declined for every customerId starting with ``declined``) and
``RefundPayment``.

``python -m actorbus run services.payment`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.store import attach_store
from ..contracts import EXCHANGE, ChargePaymentResult, RefundPaymentResult
from .handlers import add_handlers
from .http import add_payment_routes
from .store import PaymentStore

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Payment service (one per App: it holds that App's store)."""
    # Its handlers keep a persistent inbox in SQLite, in the transaction of their effect.
    service = Service("payment", queue="payment.queue", exchange=EXCHANGE, dedupe=False)
    store = attach_store(service, PaymentStore, "payment.sqlite3")
    service.declare_publishes(ChargePaymentResult, RefundPaymentResult)
    add_handlers(service, store)
    add_payment_routes(service)
    return service


#: The Payment service, for ``python -m actorbus run services.payment``.
service = build()
