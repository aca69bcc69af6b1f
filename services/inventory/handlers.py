"""Inventory's reactions: reserve stock for new orders (event or command), release on request."""

from __future__ import annotations

import sqlite3

from actorbus import HandlerContext, Service

from ..common.outbox import consume_once, enqueue, reply_once
from ..common.store import Slot
from ..contracts import (
    OrderCreatedV2,
    ReleaseStock,
    ReleaseStockResult,
    ReserveStock,
    ReserveStockResult,
    StockRejected,
    StockReserved,
)
from .store import InventoryStore, Reservation

__all__ = ("add_handlers",)


def add_handlers(service: Service, store: Slot[InventoryStore]) -> None:
    """Register Inventory's handlers on ``service``."""

    @service.on(OrderCreatedV2)
    async def on_order_created(event: OrderCreatedV2, ctx: HandlerContext) -> None:
        """Choreography: reserve the order's lines; announce stock.reserved or stock.rejected."""
        inventory = store.value
        order_id = event.order_id

        def effect(conn: sqlite3.Connection) -> Reservation:
            outcome = inventory.reserve(conn, order_id, event.items)
            announcement = (
                StockReserved(order_id=order_id, items=outcome.items)
                if outcome.reserved
                else StockRejected(order_id=order_id, reason=outcome.reason)
            )
            enqueue(conn, announcement, correlation_id=order_id, causation_id=ctx.message_id)
            return outcome

        handled = await consume_once(inventory.db, ctx, effect)
        if not handled.first or handled.value is None:
            ctx.log.info("duplicate_ignored", order_id=order_id)
            return
        inventory.relay.notify()
        _log_reservation(ctx, order_id, handled.value)

    @service.on(ReserveStock)
    async def on_reserve_stock(command: ReserveStock, ctx: HandlerContext) -> None:
        """Orchestration: reserve the order's lines and reply with the outcome."""
        inventory = store.value

        def effect(conn: sqlite3.Connection) -> ReserveStockResult:
            outcome = inventory.reserve(conn, command.order_id, command.items)
            return ReserveStockResult(
                order_id=command.order_id, reserved=outcome.reserved, reason=outcome.reason
            )

        reply, first = await reply_once(inventory.db, ctx, ReserveStockResult, effect)
        if not first:
            ctx.log.info("duplicate_answered_again", order_id=command.order_id)
            return
        _log_reservation(
            ctx, command.order_id, Reservation(reply.reserved, reply.reason, command.items)
        )

    @service.on(ReleaseStock)
    async def on_release_stock(command: ReleaseStock, ctx: HandlerContext) -> None:
        """Orchestration (compensation): give back what the order holds and reply."""
        inventory = store.value

        def effect(conn: sqlite3.Connection) -> ReleaseStockResult:
            released = inventory.release(conn, command.order_id, command.reason)
            return ReleaseStockResult(order_id=command.order_id, released=released)

        reply, first = await reply_once(inventory.db, ctx, ReleaseStockResult, effect)
        if first:
            ctx.log.info(
                "stock_released",
                order_id=command.order_id,
                released=reply.released,
                reason=command.reason,
            )
        else:
            ctx.log.info("duplicate_answered_again", order_id=command.order_id)


def _log_reservation(ctx: HandlerContext, order_id: str, outcome: Reservation) -> None:
    if outcome.reserved:
        ctx.log.info(
            "stock_reserved",
            order_id=order_id,
            items=[{"sku": line.sku, "qty": line.qty} for line in outcome.items],
        )
    else:
        ctx.log.info("stock_rejected", order_id=order_id, reason=outcome.reason)
