"""Shipping's reaction: schedule a shipment once an order's stock is reserved."""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..common.outbox import consume_once
from ..common.store import Slot
from ..contracts import StockReserved
from .store import ShippingStore

__all__ = ("add_handlers",)


def add_handlers(service: Service, store: Slot[ShippingStore]) -> None:
    """Register Shipping's handlers on ``service``."""

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Schedule the order's shipment."""
        shipping = store.value
        handled = await consume_once(
            shipping.db, ctx, lambda conn: shipping.schedule(conn, event.order_id, event.items)
        )
        if not handled.first:
            ctx.log.info("duplicate_ignored", order_id=event.order_id)
        elif handled.value:
            ctx.log.info("shipment_scheduled", order_id=event.order_id)
        else:
            ctx.log.info("shipment_already_scheduled", order_id=event.order_id)
