"""Shipping's reaction: schedule a shipment once an order's stock is reserved."""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..contracts import StockReserved
from .store import schedule

__all__ = ("add_handlers",)


def add_handlers(service: Service) -> None:
    """Register Shipping's handlers on ``service`` (each runs in its delivery's ``ctx.tx``)."""

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Schedule the order's shipment."""
        if await schedule(ctx.tx, event.order_id, event.items):
            ctx.log.info("shipment_scheduled", order_id=event.order_id)
        else:
            ctx.log.info("shipment_already_scheduled", order_id=event.order_id)
