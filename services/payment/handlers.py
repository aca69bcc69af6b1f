"""Payment's reactions (orchestration): charge an order, or refund it as compensation.

Each handler runs in the store transaction of its delivery (``ctx.tx``); its reply goes to the
outbox in that transaction, so a redelivered command (no second charge) still gets its answer.
"""

from __future__ import annotations

from actorbus import HandlerContext, Service

from ..contracts import ChargePayment, ChargePaymentResult, RefundPayment, RefundPaymentResult
from .store import charge, refund

__all__ = ("add_handlers",)


def add_handlers(service: Service) -> None:
    """Register Payment's handlers on ``service``."""

    @service.on(ChargePayment)
    async def on_charge_payment(command: ChargePayment, ctx: HandlerContext) -> None:
        """Charge the customer (declined when the customerId starts with ``declined``)."""
        outcome = await charge(ctx.tx, command.order_id, command.customer_id)
        ctx.reply(
            ChargePaymentResult(
                order_id=command.order_id, approved=outcome.approved, reason=outcome.reason
            )
        )
        if outcome.approved:
            ctx.log.info("payment_charged", order_id=command.order_id)
        else:
            ctx.log.info("payment_declined", order_id=command.order_id, reason=outcome.reason)

    @service.on(RefundPayment)
    async def on_refund_payment(command: RefundPayment, ctx: HandlerContext) -> None:
        """Compensation: refund (or cancel) the order's payment."""
        refunded = await refund(ctx.tx, command.order_id, command.reason)
        ctx.reply(RefundPaymentResult(order_id=command.order_id, refunded=refunded))
        ctx.log.info("payment_refunded", order_id=command.order_id, refunded=refunded)
