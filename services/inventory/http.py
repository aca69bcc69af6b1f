"""``GET /stock/{sku}`` and ``PUT /stock/{sku}`` ``{"available": n}``."""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from actorbus import Service, ServiceContext

from ..common.http import HttpError, json_endpoint, json_response, read_json
from ..common.state import app_store
from .store import get_stock as load_stock
from .store import set_stock as store_stock

__all__ = ("MAX_AVAILABLE", "StockUpdate", "add_stock_routes")

#: The largest stock level that can be set; more is refused as absurd.
MAX_AVAILABLE: Final = 1_000_000_000

_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class StockUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PUT /stock/{sku}``."""

    available: Annotated[int, msgspec.Meta(ge=0, le=MAX_AVAILABLE)]


def _sku(request: Request) -> str:
    sku: str = request.path_params["sku"]
    if not _SKU.match(sku):
        raise HttpError(
            400,
            "invalid_sku",
            f"SKU {sku[:80]!r} is invalid: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return sku


@json_endpoint
async def get_stock(request: Request, ctx: ServiceContext) -> Response:
    """``GET /stock/{sku}``: ``{"sku", "available"}`` or ``404``."""
    sku = _sku(request)
    level = await load_stock(app_store(ctx), sku)
    if level is None:
        raise HttpError(404, "sku_not_found", f"no stock is kept for SKU {sku!r}")
    return json_response(level)


@json_endpoint
async def put_stock(request: Request, ctx: ServiceContext) -> Response:
    """``PUT /stock/{sku}`` ``{"available": n}``: set the level (creating the SKU)."""
    sku = _sku(request)
    update = await read_json(request, StockUpdate)
    level = await store_stock(app_store(ctx), sku, update.available)
    ctx.log.info("stock_set", sku=sku, available=level.available)
    return json_response(level)


def add_stock_routes(service: Service) -> None:
    """Mount the stock endpoints on ``service``."""
    service.route("/stock/{sku}", methods=["GET"])(get_stock)
    service.route("/stock/{sku}", methods=["PUT"])(put_stock)
