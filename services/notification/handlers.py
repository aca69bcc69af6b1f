"""Notification's reactions: tell the customer an order was received and confirmed.

Notification still reads ``order.created`` v1 (single-line orders only; see the README on
retiring v1). Like every reader here it is tolerant: fields it does not know are ignored.
Each handler runs in the store transaction of its delivery (``ctx.tx``).
"""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..contracts import OrderCreated, SendConfirmation, SendConfirmationResult, StockReserved
from .store import record

__all__ = ("add_handlers",)


def add_handlers(service: Service) -> None:
    """Register Notification's handlers on ``service``."""

    @service.on(OrderCreated)
    async def on_order_created(event: OrderCreated, ctx: HandlerContext) -> None:
        """Tell the customer their order was received (from v1: one SKU)."""
        text = f"We received your order {event.order_id}: {event.qty} x {event.sku}."
        await record(ctx.tx, event.order_id, "order_received", text, ctx.message_id)
        ctx.log.info("notification_sent", order_id=event.order_id, kind="order_received")

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Tell the customer their order's items are reserved for them."""
        lines = ", ".join(f"{line.qty} x {line.sku}" for line in event.items)
        text = f"Good news: {lines} reserved for your order {event.order_id}."
        await record(ctx.tx, event.order_id, "stock_reserved", text, ctx.message_id)
        ctx.log.info("notification_sent", order_id=event.order_id, kind="stock_reserved")

    @service.on(SendConfirmation)
    async def on_send_confirmation(command: SendConfirmation, ctx: HandlerContext) -> None:
        """Orchestration: send the order confirmation and reply."""
        lines = ", ".join(f"{line.qty} x {line.sku}" for line in command.items)
        text = f"Your order {command.order_id} is confirmed: {lines}."
        await record(ctx.tx, command.order_id, "order_confirmed", text, ctx.message_id)
        ctx.reply(SendConfirmationResult(order_id=command.order_id))
        ctx.log.info("notification_sent", order_id=command.order_id, kind="order_confirmed")
