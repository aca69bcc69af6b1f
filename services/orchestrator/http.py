"""The orchestrator serves the same order endpoints as the Order service.

``POST /orders`` starts the order's saga (in the transaction that stores the order) instead of
publishing ``order.created``; see :mod:`services.order.http` for the endpoints and their
validation.
"""

from __future__ import annotations

from actorbus import Saga, Service

from ..order.http import add_order_routes as _add_order_routes
from .saga import OrderSaga, start_saga

__all__ = ("add_order_routes",)


def add_order_routes(service: Service, saga: Saga[OrderSaga]) -> None:
    """Mount ``POST /orders`` (starting ``saga``) and ``GET /orders/{orderId}`` on ``service``."""
    _add_order_routes(service, start_saga(saga))
