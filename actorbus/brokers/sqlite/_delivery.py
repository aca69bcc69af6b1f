"""Deliveries of the broker file, and the subscriptions and ``get`` that hold them.

A :class:`SqliteDelivery` is a leased row: settling it (ack, nack, retry, dead-letter) is one
operation of the connection's next group commit. ``nack``, ``retry`` and ``dead_letter``
return once that commit is on disk; ``ack`` too with ``acks=confirmed``, and at once with
``acks=async`` (the default: the ack is committed with the next batch, a crash before that
redelivers the message). It reaches its connection only through the :class:`Connection`
Protocol, which :class:`~._broker.SqliteBroker` implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from anyio.lowlevel import checkpoint

from ..._log import get_logger
from ...messages import Envelope
from .._deadletter import XH_REASON
from .._protocol import DeliveryCallback
from ._db import ACK, DEAD, REASON_REJECTED, REQUEUE, RETRY, Op

__all__ = ("Connection", "Holder", "SqliteDelivery", "SqliteSubscription")

_log = get_logger("actorbus.brokers", broker="sqlite")


class Connection(Protocol):
    """What deliveries and subscriptions need from their connection."""

    @property
    def connected(self) -> bool:
        """Entered and not closing: subscriptions may receive."""
        ...

    @property
    def confirm_acks(self) -> bool:
        """Whether ``ack()`` waits for its commit, or queues it and returns."""
        ...

    def enqueue(self, op: Op) -> None:
        """Run ``op`` in the next group commit without waiting for it."""
        ...

    async def submit(self, op: Op) -> Any:
        """Run ``op`` in the next group commit; return its result once it is on disk."""
        ...

    def cancelled(self, sub: SqliteSubscription) -> None:
        """Stop claiming for ``sub`` (its single-active-consumer slot is given up)."""
        ...


class Holder:
    """Whoever holds unsettled deliveries: a subscription, or ``get`` of a connection."""

    __slots__ = ("conn", "unsettled")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Insertion-ordered; settling removes a delivery at once (frees prefetch room).
        self.unsettled: dict[SqliteDelivery, None] = {}

    def hold(self, d: SqliteDelivery) -> None:
        """Take ``d`` unsettled."""
        self.unsettled[d] = None

    def drop_all(self) -> int:
        """Mark every unsettled delivery settled (the connection requeued them); count them."""
        taken = list(self.unsettled)
        self.unsettled.clear()
        for d in taken:
            d.settled = True
        return len(taken)


class SqliteDelivery:
    """One leased message: settle it exactly once; later settling is a no-op.

    Attributes:
        envelope: The metadata, with ``redelivered`` and ``attempt``.
        body: The payload.
        exchange: The exchange it was published to.
        queue: The queue it was consumed from.
    """

    __slots__ = ("body", "envelope", "exchange", "holder", "queue", "row", "settled")

    def __init__(
        self, row: int, envelope: Envelope, body: bytes, exchange: str, queue: str, holder: Holder
    ) -> None:
        self.row = row
        self.envelope = envelope
        self.body = body
        self.exchange = exchange
        self.queue = queue
        self.holder = holder
        self.settled = False

    def __repr__(self) -> str:
        state = "settled" if self.settled else "unsettled"
        return f"<SqliteDelivery queue={self.queue!r} {self.envelope!r} {state}>"

    def _release(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        self.holder.unsettled.pop(self, None)
        return True

    async def _settle(self, op: Op) -> None:
        done = await self.holder.conn.submit(op)
        if not done:
            # The lease was lost (this process stalled past it, or another reclaimed it):
            # the message was redelivered elsewhere; at-least-once, so nothing to undo.
            _log.warning(
                "settle_lease_lost",
                queue=self.queue,
                message_id=self.envelope.message_id,
                detail="the delivery's lease expired before it was settled; it was redelivered",
            )

    async def ack(self) -> None:
        """Confirm that the message was processed; its row is deleted.

        With ``acks=confirmed`` this returns once the deletion is committed. With
        ``acks=async`` (the default) it returns at once and the deletion is committed with
        the connection's next group commit; if the process dies before that commit, the
        message is redelivered (at-least-once, as a RabbitMQ ack lost with its connection).
        """
        if not self._release():
            await checkpoint()
            return
        conn = self.holder.conn
        if conn.confirm_acks:
            await self._settle(Op(ACK, self.row))
            return
        conn.enqueue(Op(ACK, self.row, self.queue, self.envelope.message_id))
        await checkpoint()

    async def nack(self, *, requeue: bool = True) -> None:
        """Requeue the message in its place (redelivered, next attempt), or dead-letter it.

        Args:
            requeue: ``False`` dead-letters with reason ``rejected``.
        """
        if not self._release():
            await checkpoint()
            return
        if requeue:
            await self._settle(Op(REQUEUE, self.row, self.queue))
        else:
            await self._settle(Op(DEAD, self.row, self.queue, {XH_REASON: REASON_REJECTED}))

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Put the message at the tail of its queue, ready after ``delay`` seconds.

        The delay is rounded to the queue's nearest retry tier; the message comes back with
        ``attempt`` increased by one, also recorded in the ``XH_ATTEMPT`` header. The wait is
        on disk: it survives a restart.
        """
        if not self._release():
            await checkpoint()
            return
        await self._settle(Op(RETRY, self.row, self.queue, delay, dict(headers or {})))

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to ``<queue>.dlq`` with ``headers`` and its origin recorded, in
        one transaction (the copy and the removal commit together)."""
        if not self._release():
            await checkpoint()
            return
        await self._settle(Op(DEAD, self.row, self.queue, dict(headers)))


class SqliteSubscription(Holder):
    """A consumer on one queue, with at most ``prefetch`` unsettled deliveries."""

    __slots__ = ("_cancelled", "_failed", "callback", "key", "prefetch", "queue")

    def __init__(
        self, conn: Connection, queue: str, callback: DeliveryCallback, prefetch: int, key: int
    ) -> None:
        super().__init__(conn)
        self.queue = queue
        self.callback = callback
        self.prefetch = prefetch
        self.key = key
        self._cancelled = False
        self._failed = False

    def __repr__(self) -> str:
        return (
            f"<SqliteSubscription queue={self.queue!r} prefetch={self.prefetch} "
            f"unsettled={len(self.unsettled)} active={self.active}>"
        )

    @property
    def active(self) -> bool:
        """Whether deliveries are flowing: not cancelled, not failed, connection open."""
        return not (self._cancelled or self._failed) and self.conn.connected

    @property
    def claiming(self) -> bool:
        """Whether the connection should claim messages for this subscription."""
        return not (self._cancelled or self._failed)

    @property
    def failed(self) -> bool:
        """Whether the subscription stopped because its callback raised."""
        return self._failed

    @property
    def room(self) -> int:
        """How many more deliveries it may hold."""
        return self.prefetch - len(self.unsettled)

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries in flight may still be settled."""
        await checkpoint()
        if self._cancelled:
            return
        self._cancelled = True
        self.conn.cancelled(self)
        _log.debug("subscription_cancelled", queue=self.queue)

    def stop(self) -> None:
        """Stop this consumer (its queue disappeared, or its callback raised)."""
        self._failed = True

    def deliver(self, d: SqliteDelivery) -> bool:
        """Hand ``d`` to the callback; ``False`` if the callback raised (the subscription
        failed: the caller requeues what it held)."""
        self.unsettled[d] = None
        try:
            self.callback(d)
        except Exception as exc:
            self._failed = True
            _log.error(
                "delivery_callback_failed",
                queue=self.queue,
                error=f"{type(exc).__name__}: {exc}",
                remedy="on_delivery must not raise; the subscription was stopped and its "
                "unsettled deliveries requeued",
                exc_info=exc,
            )
            return False
        return True
