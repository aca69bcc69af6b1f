"""The Order orchestrator's state: orders (as the Order service keeps them) plus their sagas.

A saga is one row: the step it waits on, the attempt, and the deadline of that attempt.
Every transition (a reply, a timeout) updates the row, settles the order when the saga ends,
and enqueues the next command in the same transaction; the outbox relay sends it. So a saga
interrupted by a crash or a restart carries on from its row: an unsent command is sent by the
relay, a lost reply is made up for by the timeout, which asks again (every receiver is
idempotent per order).

Steps: ``reserve`` (ReserveStock) → ``charge`` (ChargePayment) → ``confirm``
(SendConfirmation) → ``done`` CONFIRMED. A rejected reservation ends REJECTED at once. A
declined payment compensates: ``release`` (ReleaseStock) → ``done`` REJECTED. A step that
times out is retried up to ``max_attempts`` times; then ``reserve`` compensates with
``release`` and ``charge`` with ``refund`` (RefundPayment) → ``release``. Once the payment is
taken (``confirm``) and during compensation, steps are retried until they succeed: those
must not be abandoned half-way.
"""

from __future__ import annotations

import sqlite3
import time
from typing import ClassVar, Final, NamedTuple

from actorbus import Command, Message

from ..common.outbox import enqueue
from ..contracts import (
    ChargePayment,
    ChargePaymentResult,
    RefundPayment,
    RefundPaymentResult,
    ReleaseStock,
    ReleaseStockResult,
    ReserveStock,
    ReserveStockResult,
    SendConfirmation,
    SendConfirmationResult,
)
from ..order.store import CONFIRMED, REJECTED, NewOrder, OrderStore, select_order

__all__ = ("SAGA_SCHEMA", "OrchestratorStore", "Transition")

SAGA_SCHEMA = """
CREATE TABLE IF NOT EXISTS sagas (
    order_id   TEXT PRIMARY KEY REFERENCES orders (order_id),
    step       TEXT NOT NULL
               CHECK (step IN ('reserve', 'charge', 'confirm', 'refund', 'release', 'done')),
    attempt    INTEGER NOT NULL,
    deadline   REAL,                           -- of the current attempt; NULL when done
    reason     TEXT,                           -- why it is being compensated
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sagas_deadline ON sagas (deadline) WHERE step != 'done';
"""

DONE: Final = "done"

# The reply each step waits for.
_EXPECTS: Final[dict[type[Message], str]] = {
    ReserveStockResult: "reserve",
    ChargePaymentResult: "charge",
    SendConfirmationResult: "confirm",
    RefundPaymentResult: "refund",
    ReleaseStockResult: "release",
}
# Steps abandoned (compensated) after max_attempts timeouts, and what compensates them.
_GIVE_UP: Final = {
    "reserve": ("release", "inventory did not answer ReserveStock"),
    "charge": ("refund", "payment did not answer ChargePayment"),
}


class Transition(NamedTuple):
    """What one reply or timeout did to a saga (for the log)."""

    order_id: str
    event: str  # saga_step | saga_step_retried | order_confirmed | order_rejected | reply_ignored
    step: str
    attempt: int = 1
    reason: str | None = None


class OrchestratorStore(OrderStore):
    """Orders and their sagas; placing an order starts its saga.

    Attributes:
        step_timeout: Seconds to wait for a reply before a step is retried.
        max_attempts: Attempts of ``reserve`` and ``charge`` before compensating.
    """

    schema: ClassVar[str] = OrderStore.schema + SAGA_SCHEMA
    publishes: ClassVar[tuple[type[Message], ...]] = (
        ReserveStock,
        ReleaseStock,
        ChargePayment,
        RefundPayment,
        SendConfirmation,
    )

    step_timeout: float = 10.0
    max_attempts: int = 3

    def on_created(self, conn: sqlite3.Connection, order_id: str, new: NewOrder) -> None:
        """Start the order's saga (instead of publishing order.created): send ReserveStock."""
        conn.execute(
            "INSERT INTO sagas (order_id, step, attempt, updated_at) VALUES (?, 'reserve', 0, ?)",
            (order_id, time.time()),
        )
        self._enter(conn, order_id, "reserve")

    # ------------------------------------------------------------------ transitions

    def _command(self, conn: sqlite3.Connection, order_id: str, step: str, reason: str) -> Command:
        order = select_order(conn, order_id)
        if order is None:  # pragma: no cover - the saga references the order
            raise RuntimeError(f"saga of unknown order {order_id!r}")
        if step == "reserve":
            return ReserveStock(order_id=order_id, items=order.items)
        if step == "charge":
            return ChargePayment(order_id=order_id, customer_id=order.customer_id)
        if step == "confirm":
            return SendConfirmation(
                order_id=order_id, customer_id=order.customer_id, items=order.items
            )
        if step == "refund":
            return RefundPayment(order_id=order_id, reason=reason)
        if step == "release":
            return ReleaseStock(order_id=order_id, reason=reason)
        raise ValueError(f"saga step {step!r} sends no command")  # pragma: no cover

    def _enter(
        self,
        conn: sqlite3.Connection,
        order_id: str,
        step: str,
        *,
        reason: str | None = None,
        attempt: int = 1,
    ) -> None:
        """Move the saga to ``step`` (attempt ``attempt``) and enqueue the step's command."""
        now = time.time()
        conn.execute(
            "UPDATE sagas SET step = ?, attempt = ?, deadline = ?, "
            "reason = coalesce(?, reason), updated_at = ? WHERE order_id = ?",
            (step, attempt, now + self.step_timeout, reason, now, order_id),
        )
        (stored_reason,) = conn.execute(
            "SELECT reason FROM sagas WHERE order_id = ?", (order_id,)
        ).fetchone()
        command = self._command(conn, order_id, step, stored_reason or "")
        enqueue(conn, command, correlation_id=order_id, expect_reply=True)

    def _finish(
        self, conn: sqlite3.Connection, order_id: str, status: str, reason: str | None
    ) -> Transition:
        conn.execute(
            "UPDATE sagas SET step = 'done', deadline = NULL, reason = ?, updated_at = ? "
            "WHERE order_id = ?",
            (reason, time.time(), order_id),
        )
        self.settle(conn, order_id, status, reason)
        event = "order_confirmed" if status == CONFIRMED else "order_rejected"
        return Transition(order_id, event, DONE, reason=reason)

    def advance(self, conn: sqlite3.Connection, reply: Message) -> Transition:
        """Apply a reply to its saga (in a transaction).

        A reply for a step the saga has already left (a late answer to a retried or
        abandoned step) is ignored: the compensation under way covers it.
        """
        order_id: str = getattr(reply, "order_id", "")
        expected = _EXPECTS.get(type(reply))
        row = conn.execute(
            "SELECT step, reason FROM sagas WHERE order_id = ?", (order_id,)
        ).fetchone()
        if row is None or expected is None or row["step"] != expected:
            return Transition(order_id, "reply_ignored", row["step"] if row else "unknown")
        if isinstance(reply, ReserveStockResult):
            if reply.reserved:
                self._enter(conn, order_id, "charge")
                return Transition(order_id, "saga_step", "charge")
            return self._finish(conn, order_id, REJECTED, reply.reason or "stock rejected")
        if isinstance(reply, ChargePaymentResult):
            if reply.approved:
                self._enter(conn, order_id, "confirm")
                return Transition(order_id, "saga_step", "confirm")
            reason = f"payment declined: {reply.reason}" if reply.reason else "payment declined"
            self._enter(conn, order_id, "release", reason=reason)
            return Transition(order_id, "saga_step", "release", reason=reason)
        if isinstance(reply, SendConfirmationResult):
            return self._finish(conn, order_id, CONFIRMED, None)
        if isinstance(reply, RefundPaymentResult):
            self._enter(conn, order_id, "release")
            return Transition(order_id, "saga_step", "release", reason=row["reason"])
        # ReleaseStockResult: compensation complete.
        return self._finish(conn, order_id, REJECTED, row["reason"] or "compensated")

    def expire(self, conn: sqlite3.Connection, now: float) -> list[Transition]:
        """Retry or compensate every step whose deadline passed (in a transaction)."""
        due = conn.execute(
            "SELECT order_id, step, attempt FROM sagas "
            "WHERE step != 'done' AND deadline <= ? ORDER BY deadline LIMIT 500",
            (now,),
        ).fetchall()
        done: list[Transition] = []
        for row in due:
            order_id, step, attempt = row["order_id"], row["step"], row["attempt"]
            if step in _GIVE_UP and attempt >= self.max_attempts:
                next_step, why = _GIVE_UP[step]
                reason = f"{why} within {self.step_timeout:g} s ({attempt} attempts)"
                self._enter(conn, order_id, next_step, reason=reason)
                done.append(Transition(order_id, "saga_step_timed_out", next_step, reason=reason))
            else:
                self._enter(conn, order_id, step, attempt=attempt + 1)
                done.append(Transition(order_id, "saga_step_retried", step, attempt + 1))
        return done

    @staticmethod
    def next_deadline(conn: sqlite3.Connection) -> float | None:
        """Return the earliest deadline of a running saga, or ``None``."""
        (deadline,) = conn.execute(
            "SELECT min(deadline) FROM sagas WHERE step != 'done'"
        ).fetchone()
        return None if deadline is None else float(deadline)

    async def saga_step(self, order_id: str) -> str | None:
        """Return the step the saga of ``order_id`` waits on (``"done"`` when over), or ``None``."""

        def query(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT step FROM sagas WHERE order_id = ?", (order_id,)).fetchone()
            return None if row is None else str(row["step"])

        return await self.db.read(query)
