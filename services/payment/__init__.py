"""The Payment service (orchestration): charges orders and refunds them on compensation.

Answers ``ChargePayment`` (declined for every customerId starting with ``declined``) and
``RefundPayment``.

``python -m actorbus run services.payment`` runs it alone.
"""

from __future__ import annotations

from actorbus import Service

from ..common.state import migrate_on_start
from ..contracts import EXCHANGE, ChargePaymentResult, RefundPaymentResult
from .handlers import add_handlers
from .http import add_payment_routes
from .store import PAYMENT_STEPS

__all__ = ("build", "service")


def build() -> Service:
    """Return a new Payment service (durable: it needs an App with a store)."""
    service = Service("payment", queue="payment.queue", exchange=EXCHANGE, durable=True)
    service.declare_publishes(ChargePaymentResult, RefundPaymentResult)
    migrate_on_start(service, PAYMENT_STEPS)
    add_handlers(service)
    add_payment_routes(service)
    return service


#: The Payment service, for ``python -m actorbus run services.payment``.
service = build()
