"""``GET /notifications?orderId=…``: the notifications sent (for one order, or the latest)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from actorbus import Service, ServiceContext

from ..common.http import HttpError, json_endpoint, json_response
from ..common.state import app_store
from .store import list_notifications as load_notifications

__all__ = ("add_notification_routes",)

_ALLOWED = frozenset({"orderId"})


@json_endpoint
async def list_notifications(request: Request, ctx: ServiceContext) -> Response:
    """``GET /notifications?orderId=…``: ``{"notifications": [...]}``, oldest first.

    Without ``orderId``, the latest 100 notifications of all orders.
    """
    unknown = sorted(set(request.query_params) - _ALLOWED)
    if unknown:
        raise HttpError(
            400, "invalid_query", f"unknown query parameter(s) {unknown}; only 'orderId' is known"
        )
    order_id = request.query_params.get("orderId")
    if order_id is not None and not 1 <= len(order_id) <= 128:
        raise HttpError(400, "invalid_query", "orderId must be 1 to 128 characters")
    found = await load_notifications(app_store(ctx), order_id)
    return json_response({"notifications": found})


def add_notification_routes(service: Service) -> None:
    """Mount ``GET /notifications`` on ``service``."""
    service.route("/notifications", methods=["GET"])(list_notifications)
