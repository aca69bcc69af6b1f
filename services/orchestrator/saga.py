"""The order saga: the course's orchestration diagram, declared.

``ReserveStock`` → ``ChargePayment`` → ``SendConfirmation``; a rejected reservation or a
declined payment compensates the steps already done, last first (``ReleaseStock``); a step
that gets no reply in time is sent again, then compensated itself (a ``ChargePayment`` that
may have taken effect is undone with ``RefundPayment``). Once the payment is taken the saga
never gives up on confirming. Every command is built from the instance's state.
"""

from __future__ import annotations

import msgspec

from actorbus import Saga
from actorbus.app import ServiceTransaction

from ..contracts import (
    ChargePayment,
    ChargePaymentResult,
    OrderLine,
    RefundPayment,
    RefundPaymentResult,
    ReleaseStock,
    ReleaseStockResult,
    ReserveStock,
    ReserveStockResult,
    SendConfirmation,
    SendConfirmationResult,
)
from ..order.store import CONFIRMED, REJECTED, Announce, OrderView, settle

__all__ = ("OrderSaga", "order_saga", "start_saga")


class OrderSaga(msgspec.Struct, frozen=True):
    """The state of one order's saga (stored as JSON with its row); its id is the order id."""

    order_id: str
    customer_id: str
    items: tuple[OrderLine, ...]


async def _confirmed(state: OrderSaga, tx: ServiceTransaction) -> None:
    """The saga completed: the order is CONFIRMED (in the transaction of the last reply)."""
    if await settle(tx, state.order_id, CONFIRMED):
        log = tx.context.log.bind(correlation_id=state.order_id)
        log.info("order_confirmed", order_id=state.order_id)


async def _rejected(state: OrderSaga, reason: str, tx: ServiceTransaction) -> None:
    """The saga compensated: the order is REJECTED, with the reason."""
    if await settle(tx, state.order_id, REJECTED, reason):
        log = tx.context.log.bind(correlation_id=state.order_id)
        log.info("order_rejected", order_id=state.order_id, reason=reason)


def _declined(reply: ChargePaymentResult) -> str:
    return f"payment declined: {reply.reason}" if reply.reason else "payment declined"


def order_saga(timeout: float, attempts: int) -> Saga[OrderSaga]:
    """Return the order saga, each step waiting ``timeout`` s per try, ``attempts`` tries."""
    return (
        Saga("order", OrderSaga, timeout=timeout, attempts=attempts,
             on_completed=_confirmed, on_compensated=_rejected)
        .step("reserve", send=ReserveStock, reply=ReserveStockResult,
              ok=lambda r: r.reserved, why=lambda r: r.reason or "stock rejected",
              compensate=ReleaseStock, compensation_reply=ReleaseStockResult)
        .step("charge", send=ChargePayment, reply=ChargePaymentResult,
              ok=lambda r: r.approved, why=_declined,
              compensate=RefundPayment, compensation_reply=RefundPaymentResult)
        .step("confirm", send=SendConfirmation, reply=SendConfirmationResult, attempts=None)
    )  # fmt: skip


def start_saga(saga: Saga[OrderSaga]) -> Announce:
    """Return what ``POST /orders`` does with a new order: start its saga, same transaction."""

    async def start(tx: ServiceTransaction, order: OrderView) -> None:
        state = OrderSaga(order.order_id, order.customer_id, order.items)
        await saga.start(tx, order.order_id, state)

    return start
