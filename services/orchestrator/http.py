"""The orchestrator serves the same order endpoints as the Order service.

``POST /orders`` starts a saga instead of publishing ``order.created``; see
:mod:`services.order.http` for the endpoints and their validation.
"""

from __future__ import annotations

from ..order.http import add_order_routes

__all__ = ("add_order_routes",)
