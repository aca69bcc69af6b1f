"""Inventory's reactions: reserve stock for new orders (event or command), release on request.

Each handler runs in the store transaction of its delivery (``ctx.tx``): the stock change, the
inbox record and what it publishes or replies (the outbox) commit together, so a redelivery has
no second effect and its first outcome is still published.
"""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..contracts import (
    OrderCreatedV2,
    ReleaseStock,
    ReleaseStockResult,
    ReserveStock,
    ReserveStockResult,
    StockRejected,
    StockReserved,
)
from .store import Reservation, release, reserve

__all__ = ("add_handlers",)


def add_handlers(service: Service) -> None:
    """Register Inventory's handlers on ``service``."""

    @service.on(OrderCreatedV2)
    async def on_order_created(event: OrderCreatedV2, ctx: HandlerContext) -> None:
        """Choreography: reserve the order's lines; announce stock.reserved or stock.rejected."""
        order_id = event.order_id
        outcome = await reserve(ctx.tx, order_id, event.items)
        ctx.publish(
            StockReserved(order_id=order_id, items=outcome.items)
            if outcome.reserved
            else StockRejected(order_id=order_id, reason=outcome.reason),
            correlation_id=order_id,
        )
        _log_reservation(ctx, order_id, outcome)

    @service.on(ReserveStock)
    async def on_reserve_stock(command: ReserveStock, ctx: HandlerContext) -> None:
        """Orchestration: reserve the order's lines and reply with the outcome."""
        outcome = await reserve(ctx.tx, command.order_id, command.items)
        ctx.reply(
            ReserveStockResult(
                order_id=command.order_id, reserved=outcome.reserved, reason=outcome.reason
            )
        )
        _log_reservation(
            ctx, command.order_id, Reservation(outcome.reserved, outcome.reason, command.items)
        )

    @service.on(ReleaseStock)
    async def on_release_stock(command: ReleaseStock, ctx: HandlerContext) -> None:
        """Orchestration (compensation): give back what the order holds and reply."""
        released = await release(ctx.tx, command.order_id, command.reason)
        ctx.reply(ReleaseStockResult(order_id=command.order_id, released=released))
        ctx.log.info(
            "stock_released", order_id=command.order_id, released=released, reason=command.reason
        )


def _log_reservation(ctx: HandlerContext, order_id: str, outcome: Reservation) -> None:
    if outcome.reserved:
        ctx.log.info(
            "stock_reserved",
            order_id=order_id,
            items=[{"sku": line.sku, "qty": line.qty} for line in outcome.items],
        )
    else:
        ctx.log.info("stock_rejected", order_id=order_id, reason=outcome.reason)
