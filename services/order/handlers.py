"""The Order service's reactions: CONFIRMED when the stock is reserved, else REJECTED."""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..common.outbox import consume_once
from ..common.store import Slot
from ..contracts import StockRejected, StockReserved
from .store import CONFIRMED, REJECTED, OrderStore

__all__ = ("add_handlers",)


def add_handlers(service: Service, store: Slot[OrderStore]) -> None:
    """Register the Order service's event handlers on ``service``."""

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Confirm the order whose stock was reserved."""
        orders = store.value
        handled = await consume_once(
            orders.db, ctx, lambda conn: orders.settle(conn, event.order_id, CONFIRMED)
        )
        if not handled.first:
            ctx.log.info("duplicate_ignored", order_id=event.order_id)
        elif handled.value:
            ctx.log.info("order_confirmed", order_id=event.order_id)
        else:
            ctx.log.warning("order_not_pending", order_id=event.order_id, outcome=CONFIRMED)

    @service.on(StockRejected)
    async def on_stock_rejected(event: StockRejected, ctx: HandlerContext) -> None:
        """Reject the order whose stock could not be reserved."""
        orders = store.value
        handled = await consume_once(
            orders.db,
            ctx,
            lambda conn: orders.settle(conn, event.order_id, REJECTED, event.reason),
        )
        if not handled.first:
            ctx.log.info("duplicate_ignored", order_id=event.order_id)
        elif handled.value:
            ctx.log.info("order_rejected", order_id=event.order_id, reason=event.reason)
        else:
            ctx.log.warning("order_not_pending", order_id=event.order_id, outcome=REJECTED)
