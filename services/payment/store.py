"""The Payment service's state: one payment per order (charged, declined, refunded)."""

from __future__ import annotations

import sqlite3
import time
from typing import ClassVar, Final, NamedTuple

from ..common.store import ServiceStore

__all__ = ("DECLINED_PREFIX", "PAYMENT_SCHEMA", "Charge", "PaymentStore")

#: Payment declines every order whose customerId starts with this (contract, for demos/tests).
DECLINED_PREFIX: Final = "declined"

PAYMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    order_id    TEXT PRIMARY KEY,
    customer_id TEXT,
    status      TEXT NOT NULL CHECK (status IN ('CHARGED', 'DECLINED', 'REFUNDED', 'CANCELLED')),
    reason      TEXT,
    updated_at  REAL NOT NULL
);
"""


class Charge(NamedTuple):
    """The outcome of charging an order."""

    approved: bool
    reason: str


class PaymentStore(ServiceStore):
    """Payments, recorded with the inbox row of the command that caused them."""

    schema: ClassVar[str] = ServiceStore.schema + PAYMENT_SCHEMA

    @staticmethod
    def charge(conn: sqlite3.Connection, order_id: str, customer_id: str) -> Charge:
        """Charge ``order_id`` once (in a transaction); asking again returns the first outcome.

        An order refunded (or cancelled) before it was charged is declined.
        """
        row = conn.execute(
            "SELECT status, reason FROM payments WHERE order_id = ?", (order_id,)
        ).fetchone()
        if row is not None:
            if row["status"] == "CHARGED":
                return Charge(True, "")
            return Charge(False, row["reason"] or row["status"].lower())
        if customer_id.startswith(DECLINED_PREFIX):
            status, reason = "DECLINED", f"card of customer {customer_id!r} was declined"
        else:
            status, reason = "CHARGED", ""
        conn.execute(
            "INSERT INTO payments (order_id, customer_id, status, reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (order_id, customer_id, status, reason or None, time.time()),
        )
        return Charge(status == "CHARGED", reason)

    @staticmethod
    def refund(conn: sqlite3.Connection, order_id: str, reason: str) -> bool:
        """Refund ``order_id`` (in a transaction); return whether money went back.

        Refunding an order never charged leaves a ``CANCELLED`` tombstone, so that a charge
        request arriving late is declined.
        """
        row = conn.execute("SELECT status FROM payments WHERE order_id = ?", (order_id,)).fetchone()
        now = time.time()
        if row is None:
            conn.execute(
                "INSERT INTO payments (order_id, status, reason, updated_at) "
                "VALUES (?, 'CANCELLED', ?, ?)",
                (order_id, f"cancelled: {reason}", now),
            )
            return False
        if row["status"] != "CHARGED":
            return False
        conn.execute(
            "UPDATE payments SET status = 'REFUNDED', reason = ?, updated_at = ? "
            "WHERE order_id = ?",
            (f"refunded: {reason}", now, order_id),
        )
        return True
