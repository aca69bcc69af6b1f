"""The Order service's reactions: CONFIRMED when the stock is reserved, else REJECTED."""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..contracts import StockRejected, StockReserved
from .store import CONFIRMED, REJECTED, settle

__all__ = ("add_handlers",)


def add_handlers(service: Service) -> None:
    """Register the Order service's event handlers on ``service``.

    Each runs in the store transaction of its delivery (``ctx.tx``), whose inbox record makes a
    redelivery a no-op.
    """

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Confirm the order whose stock was reserved."""
        if await settle(ctx.tx, event.order_id, CONFIRMED):
            ctx.log.info("order_confirmed", order_id=event.order_id)
        else:
            ctx.log.warning("order_not_pending", order_id=event.order_id, outcome=CONFIRMED)

    @service.on(StockRejected)
    async def on_stock_rejected(event: StockRejected, ctx: HandlerContext) -> None:
        """Reject the order whose stock could not be reserved."""
        if await settle(ctx.tx, event.order_id, REJECTED, event.reason):
            ctx.log.info("order_rejected", order_id=event.order_id, reason=event.reason)
        else:
            ctx.log.warning("order_not_pending", order_id=event.order_id, outcome=REJECTED)
