"""``GET /shipments/{orderId}``: the shipment scheduled for an order (an addition to §4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from actorbus import Service, ServiceContext

from ..common.http import HttpError, json_endpoint, json_response
from ..common.state import app_store
from .store import get_shipment as load_shipment

__all__ = ("add_shipment_routes",)


@json_endpoint
async def get_shipment(request: Request, ctx: ServiceContext) -> Response:
    """``GET /shipments/{orderId}``: the shipment, or ``404``."""
    order_id = request.path_params["order_id"]
    shipment = await load_shipment(app_store(ctx), order_id)
    if shipment is None:
        raise HttpError(404, "shipment_not_found", f"no shipment for order {order_id!r}")
    return json_response(shipment)


def add_shipment_routes(service: Service) -> None:
    """Mount ``GET /shipments/{orderId}`` on ``service``."""
    service.route("/shipments/{order_id}", methods=["GET"])(get_shipment)
