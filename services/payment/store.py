"""The Payment service's state: one payment per order (charged, declined, refunded)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, NamedTuple

from actorbus.stores import MigrationStep, Transaction

__all__ = ("DECLINED_PREFIX", "PAYMENT_STEPS", "Charge", "charge", "refund")

#: Payment declines every order whose customerId starts with this (contract, for demos/tests).
DECLINED_PREFIX: Final = "declined"

#: Payment's tables (migration namespace ``payment``): append steps, never edit one.
PAYMENT_STEPS: Final[Sequence[MigrationStep]] = (
    """
    CREATE TABLE payments (
        order_id    TEXT PRIMARY KEY,
        customer_id TEXT,
        status      TEXT NOT NULL
                    CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED', 'CANCELLED')),
        reason      TEXT,
        updated_at  DOUBLE PRECISION NOT NULL
    )
    """,
)


class Charge(NamedTuple):
    """The outcome of charging an order."""

    approved: bool
    reason: str


async def charge(tx: Transaction, order_id: str, customer_id: str) -> Charge:
    """Charge ``order_id`` once; asking again (a saga's retry) returns the first outcome.

    An order refunded (or cancelled) before it was charged is declined.
    """
    row = await tx.fetchone("SELECT status, reason FROM payments WHERE order_id = ?", order_id)
    if row is not None:
        if row["status"] == "CHARGED":
            return Charge(True, "")
        return Charge(False, row["reason"] or str(row["status"]).lower())
    if customer_id.startswith(DECLINED_PREFIX):
        status, reason = "DECLINED", f"card of customer {customer_id!r} was declined"
    else:
        status, reason = "CHARGED", ""
    await tx.execute(
        "INSERT INTO payments (order_id, customer_id, status, reason, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        order_id,
        customer_id,
        status,
        reason or None,
        time.time(),
    )
    return Charge(status == "CHARGED", reason)


async def refund(tx: Transaction, order_id: str, reason: str) -> bool:
    """Refund ``order_id``; return whether money went back.

    Refunding an order never charged leaves a ``CANCELLED`` tombstone, so that a charge
    request arriving late is declined.
    """
    status = await tx.fetchval("SELECT status FROM payments WHERE order_id = ?", order_id)
    now = time.time()
    if status is None:
        await tx.execute(
            "INSERT INTO payments (order_id, status, reason, updated_at) "
            "VALUES (?, 'CANCELLED', ?, ?)",
            order_id,
            f"cancelled: {reason}",
            now,
        )
        return False
    if status != "CHARGED":
        return False
    await tx.execute(
        "UPDATE payments SET status = 'REFUNDED', reason = ?, updated_at = ? WHERE order_id = ?",
        f"refunded: {reason}",
        now,
        order_id,
    )
    return True
