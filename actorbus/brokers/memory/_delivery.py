"""A message in a memory queue, its settlement, and whoever holds it unsettled.

:class:`MemoryDelivery` is one message in one queue and, once dispatched, a delivery to settle
exactly once: ack, nack (requeue or dead-letter), retry after a delay, dead-letter. An
:class:`Owner` holds deliveries unsettled: a :class:`MemorySubscription` (a consumer of one
queue, bounded by its prefetch) or a connection's ``get``.

This is the bottom of the memory broker. It reaches the queue, the server and the connection
only through the Protocols below (:class:`Queue`, :class:`Notifier`, :class:`Connection`),
which :class:`~._queue.MemoryQueue`, :class:`~._server.MemoryServer` and
:class:`~._connection.MemoryBroker` implement.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from anyio.lowlevel import checkpoint

from ..._log import get_logger
from ...messages import Envelope
from .._deadletter import REASON_REJECTED, XH_ATTEMPT, XH_REASON
from .._protocol import DeliveryCallback, QueueSpec, nearest_tier

if TYPE_CHECKING:
    import anyio

__all__ = (
    "Connection",
    "MemoryDelivery",
    "MemorySubscription",
    "Notifier",
    "Owner",
    "Queue",
    "derive",
    "retry_tier",
)

_log = get_logger("actorbus.brokers", broker="memory")

#: Dead-letter reasons the broker itself records in ``XH_REASON``.


def derive(
    envelope: Envelope,
    *,
    redelivered: bool,
    attempt: int,
    headers: Mapping[str, Any] | None = None,
) -> Envelope:
    """Copy an envelope with new delivery state; published envelopes are never mutated."""
    new = copy.copy(envelope)
    new.redelivered = redelivered
    new.attempt = attempt
    if headers is not None:
        new.headers = headers
    return new


def retry_tier(delays: tuple[float, ...], delay: float) -> float:
    """Return the tier nearest to ``delay`` (``delay`` itself without tiers)."""
    return nearest_tier(delays, delay) if delays else delay


class Notifier(Protocol):
    """What a settled delivery needs from the server: wake whoever waits for a change.

    ``changed`` is set only while someone waits, so the hot path pays one attribute check.
    """

    @property
    def changed(self) -> anyio.Event | None: ...

    def notify(self) -> None: ...


class Queue(Protocol):
    """What deliveries and subscriptions need from their queue (a :class:`~._queue.MemoryQueue`)."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> QueueSpec: ...

    @property
    def server(self) -> Notifier: ...

    @property
    def ready(self) -> deque[MemoryDelivery]: ...

    @property
    def consumers(self) -> list[MemorySubscription]: ...

    def put(self, d: MemoryDelivery) -> None: ...

    def dispatch(self) -> None: ...

    def requeue_front(self, deliveries: Sequence[MemoryDelivery]) -> None: ...

    def remove_consumer(self, sub: MemorySubscription) -> None: ...

    def dead_letter(self, d: MemoryDelivery, headers: Mapping[str, Any]) -> None: ...


class Connection(Protocol):
    """What deliveries and subscriptions need from the connection that holds them.

    Implemented by :class:`~._connection.MemoryBroker`.
    """

    @property
    def connected(self) -> bool:
        """Entered and the connection not dropped: its subscriptions may receive."""
        ...

    def schedule(self, d: MemoryDelivery, delay: float) -> bool:
        """Put ``d`` into its queue after ``delay``; ``False`` if the connection cannot."""
        ...

    def forget(self, sub: MemorySubscription) -> None:
        """Stop tracking a cancelled subscription that holds no unsettled delivery."""
        ...


class MemoryDelivery(msgspec.Struct, eq=False):
    """One message in a queue, and once dispatched, a delivery to settle exactly once.

    Created once per message and queue when routed, so a msgspec Struct: built in C (about
    40 % cheaper than a slotted class's ``__init__``), hashed and compared by identity
    (``eq=False``: it is a key of its owner's ``unsettled``), never encoded.
    """

    envelope: Envelope
    body: bytes
    exchange: str
    home: Queue
    """The queue holding the message (``queue`` is its name)."""
    _owner: Owner | None = None
    _settled: bool = False

    @property
    def queue(self) -> str:
        """The queue it was consumed from."""
        return self.home.name

    def __repr__(self) -> str:
        state = "settled" if self._settled else "unsettled"
        return f"<MemoryDelivery queue={self.queue!r} {self.envelope!r} {state}>"

    def discard(self) -> None:
        """Mark it settled without telling anyone: it left its queue (purged, overflowed)."""
        self._settled = True

    def _release(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        owner = self._owner
        if owner is not None:
            owner.unsettled.pop(self, None)
        server = self.home.server
        if server.changed is not None:
            server.notify()
        return True

    async def ack(self) -> None:
        """Confirm that the message was processed; the broker forgets it."""
        if self._settled:
            return
        self._settled = True
        owner = self._owner
        if owner is not None:
            del owner.unsettled[self]
        q = self.home
        if q.ready and q.consumers:
            q.dispatch()
        if q.server.changed is not None:
            q.server.notify()

    async def nack(self, *, requeue: bool = True) -> None:
        """Requeue the message at the head of its queue (redelivered), or dead-letter it.

        Args:
            requeue: ``False`` dead-letters with reason ``rejected``.
        """
        if not self._release():
            return
        q = self.home
        if requeue:
            q.requeue_front((self,))
            q.dispatch()
        else:
            q.dead_letter(self, {XH_REASON: REASON_REJECTED})

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Put the message back at the tail of its queue after ``delay`` seconds.

        The delay is rounded up to the queue's retry tier (see ``QueueSpec.retry_delays``)
        and measured with the broker's clock. The message comes back with ``attempt``
        increased by one, also recorded in the ``XH_ATTEMPT`` header.
        """
        if not self._release():
            return
        q = self.home
        attempt = self.envelope.attempt + 1
        merged = dict(self.envelope.headers)
        if headers:
            merged.update(headers)
        merged[XH_ATTEMPT] = attempt
        again = MemoryDelivery(
            derive(self.envelope, redelivered=False, attempt=attempt, headers=merged),
            self.body,
            self.exchange,
            q,
        )
        wait = retry_tier(q.spec.retry_delays, delay)
        owner = self._owner
        conn = owner.conn if owner is not None else None
        if wait <= 0 or conn is None or not conn.schedule(again, wait):
            q.put(again)

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to ``<queue>.dlq`` with ``headers`` and its origin recorded."""
        if self._release():
            self.home.dead_letter(self, headers)


class Owner:
    """Whoever holds unsettled deliveries: a subscription, or ``get`` of a connection."""

    __slots__ = ("conn", "prefetch", "unsettled")

    def __init__(self, conn: Connection, prefetch: float) -> None:
        self.conn = conn
        self.prefetch = prefetch
        # Insertion-ordered: requeued in the order they were delivered.
        self.unsettled: dict[MemoryDelivery, None] = {}

    def hold(self, d: MemoryDelivery) -> None:
        """Take ``d`` unsettled (``get``): settling it releases it from here."""
        d._owner = self
        self.unsettled[d] = None

    def take_unsettled(self) -> list[MemoryDelivery]:
        """Mark every unsettled delivery settled (later settling is a no-op); return them."""
        taken = list(self.unsettled)
        self.unsettled.clear()
        for d in taken:
            d._settled = True
        return taken


class MemorySubscription(Owner):
    """A consumer on one queue, with at most ``prefetch`` unsettled deliveries."""

    __slots__ = ("_cancelled", "_failed", "callback", "home", "queue")

    def __init__(
        self, conn: Connection, q: Queue, callback: DeliveryCallback, prefetch: int
    ) -> None:
        super().__init__(conn, prefetch)
        self.queue = q.name
        self.callback = callback
        self.home = q
        self._cancelled = False
        self._failed = False

    def __repr__(self) -> str:
        return (
            f"<MemorySubscription queue={self.queue!r} prefetch={self.prefetch} "
            f"unsettled={len(self.unsettled)} active={self.active}>"
        )

    @property
    def active(self) -> bool:
        """Whether deliveries are flowing: not cancelled, not failed, connection up."""
        return not (self._cancelled or self._failed) and self.conn.connected

    @property
    def failed(self) -> bool:
        """Whether the subscription stopped because its callback raised."""
        return self._failed

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries in flight may still be settled."""
        await checkpoint()
        if self._cancelled:
            return
        self._cancelled = True
        self.home.remove_consumer(self)
        if not self.unsettled:
            self.conn.forget(self)
        _log.debug("subscription_cancelled", queue=self.queue)

    def detach(self, *, cancel: bool = False) -> None:
        """Stop consuming because the connection went away (dropped, or closed: ``cancel``).

        Unsettled deliveries stay here for the connection to requeue.
        """
        self.home.remove_consumer(self)
        if cancel:
            self._cancelled = True

    def reattach(self) -> None:
        """Consume again after the connection came back, unless cancelled or failed."""
        if not self._cancelled and not self._failed:
            self.home.consumers.append(self)

    def deliver(self, d: MemoryDelivery) -> None:
        """Hand ``d`` to the callback; it stays unsettled here until it is settled."""
        d._owner = self
        self.unsettled[d] = None
        try:
            self.callback(d)
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        """Stop this consumer after its callback raised; requeue what it held."""
        self._failed = True
        self.home.remove_consumer(self)
        self.home.requeue_front(self.take_unsettled())
        _log.error(
            "delivery_callback_failed",
            queue=self.queue,
            error=f"{type(exc).__name__}: {exc}",
            remedy="on_delivery must not raise; the subscription was stopped and its "
            "unsettled deliveries requeued",
            exc_info=exc,
        )
