"""Payment's reactions (orchestration): charge an order, or refund it as compensation."""

from __future__ import annotations

import sqlite3

from actorbus import HandlerContext, Service

from ..common.outbox import reply_once
from ..common.store import Slot
from ..contracts import ChargePayment, ChargePaymentResult, RefundPayment, RefundPaymentResult
from .store import PaymentStore

__all__ = ("add_handlers",)


def add_handlers(service: Service, store: Slot[PaymentStore]) -> None:
    """Register Payment's handlers on ``service``."""

    @service.on(ChargePayment)
    async def on_charge_payment(command: ChargePayment, ctx: HandlerContext) -> None:
        """Charge the customer (declined when the customerId starts with ``declined``)."""
        payments = store.value

        def effect(conn: sqlite3.Connection) -> ChargePaymentResult:
            outcome = payments.charge(conn, command.order_id, command.customer_id)
            return ChargePaymentResult(
                order_id=command.order_id, approved=outcome.approved, reason=outcome.reason
            )

        reply, first = await reply_once(payments.db, ctx, ChargePaymentResult, effect)
        if not first:
            ctx.log.info("duplicate_answered_again", order_id=command.order_id)
        elif reply.approved:
            ctx.log.info("payment_charged", order_id=command.order_id)
        else:
            ctx.log.info("payment_declined", order_id=command.order_id, reason=reply.reason)

    @service.on(RefundPayment)
    async def on_refund_payment(command: RefundPayment, ctx: HandlerContext) -> None:
        """Compensation: refund (or cancel) the order's payment."""
        payments = store.value

        def effect(conn: sqlite3.Connection) -> RefundPaymentResult:
            refunded = payments.refund(conn, command.order_id, command.reason)
            return RefundPaymentResult(order_id=command.order_id, refunded=refunded)

        reply, first = await reply_once(payments.db, ctx, RefundPaymentResult, effect)
        if first:
            ctx.log.info("payment_refunded", order_id=command.order_id, refunded=reply.refunded)
        else:
            ctx.log.info("duplicate_answered_again", order_id=command.order_id)
