"""Notification's reactions: tell the customer an order was received and confirmed.

Notification still reads ``order.created`` v1 (single-line orders only; see the README on
retiring v1). Like every reader here it is tolerant: fields it does not know are ignored.
"""

from __future__ import annotations

import sqlite3

from actorbus import HandlerContext, Service

from ..common.outbox import consume_once, reply_once
from ..common.store import Slot
from ..contracts import OrderCreated, SendConfirmation, SendConfirmationResult, StockReserved
from .store import NotificationStore

__all__ = ("add_handlers",)


def add_handlers(service: Service, store: Slot[NotificationStore]) -> None:
    """Register Notification's handlers on ``service``."""

    @service.on(OrderCreated)
    async def on_order_created(event: OrderCreated, ctx: HandlerContext) -> None:
        """Tell the customer their order was received (from v1: one SKU)."""
        notifications = store.value
        text = f"We received your order {event.order_id}: {event.qty} x {event.sku}."
        handled = await consume_once(
            notifications.db,
            ctx,
            lambda conn: notifications.record(
                conn, event.order_id, "order_received", text, ctx.message_id
            ),
        )
        if handled.first:
            ctx.log.info("notification_sent", order_id=event.order_id, kind="order_received")
        else:
            ctx.log.info("duplicate_ignored", order_id=event.order_id)

    @service.on(StockReserved)
    async def on_stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        """Tell the customer their order's items are reserved for them."""
        notifications = store.value
        lines = ", ".join(f"{line.qty} x {line.sku}" for line in event.items)
        text = f"Good news: {lines} reserved for your order {event.order_id}."
        handled = await consume_once(
            notifications.db,
            ctx,
            lambda conn: notifications.record(
                conn, event.order_id, "stock_reserved", text, ctx.message_id
            ),
        )
        if handled.first:
            ctx.log.info("notification_sent", order_id=event.order_id, kind="stock_reserved")
        else:
            ctx.log.info("duplicate_ignored", order_id=event.order_id)

    @service.on(SendConfirmation)
    async def on_send_confirmation(command: SendConfirmation, ctx: HandlerContext) -> None:
        """Orchestration: send the order confirmation and reply."""
        notifications = store.value
        lines = ", ".join(f"{line.qty} x {line.sku}" for line in command.items)
        text = f"Your order {command.order_id} is confirmed: {lines}."

        def effect(conn: sqlite3.Connection) -> SendConfirmationResult:
            notifications.record(conn, command.order_id, "order_confirmed", text, ctx.message_id)
            return SendConfirmationResult(order_id=command.order_id)

        _, first = await reply_once(notifications.db, ctx, SendConfirmationResult, effect)
        if first:
            ctx.log.info("notification_sent", order_id=command.order_id, kind="order_confirmed")
        else:
            ctx.log.info("duplicate_answered_again", order_id=command.order_id)
