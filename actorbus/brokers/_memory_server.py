"""The memory broker's server side: queues, deliveries, subscriptions and the shared server.

What a RabbitMQ node holds, in process: :class:`MemoryServer` keeps the exchanges (with their
routing tables), the queues and the messages; a :class:`MemoryQueue` keeps its ready messages
and the consumers competing for them; a :class:`MemoryDelivery` is one message in a queue and,
once dispatched, a delivery to settle exactly once. :class:`~actorbus.brokers.memory.MemoryBroker`
is the connection to a server; this module is its private machinery (see that module's
docstring for the semantics).
"""

from __future__ import annotations

import copy
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.lowlevel import checkpoint

from .._log import get_logger
from ..exceptions import ExchangeNotFoundError, QueueNotFoundError, TopologyError
from ._deadletter import (
    XH_ATTEMPT,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from ._protocol import (
    DEFAULT_EXCHANGE,
    Binding,
    DeliveryCallback,
    ExchangeSpec,
    QueueSpec,
    Topology,
    nearest_tier,
)
from ._routing import Router

if TYPE_CHECKING:
    from ..messages import Envelope
    from .memory import MemoryBroker

__all__ = (
    "REASON_DELIVERY_LIMIT",
    "REASON_MAXLEN",
    "REASON_REJECTED",
    "MemoryDelivery",
    "MemoryQueue",
    "MemoryServer",
    "MemorySubscription",
    "Owner",
    "derive",
    "retry_tier",
    "server_for",
)

_log = get_logger("actorbus.brokers", broker="memory")

#: Dead-letter reasons the broker itself records in ``XH_REASON``.
REASON_REJECTED = "rejected"
REASON_MAXLEN = "maxlen"
REASON_DELIVERY_LIMIT = "delivery-limit"


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


class MemoryDelivery(msgspec.Struct, eq=False):
    """One message in a queue, and once dispatched, a delivery to settle exactly once.

    Created once per message and queue when routed, so a msgspec Struct: built in C (about
    40 % cheaper than a slotted class's ``__init__``), hashed and compared by identity
    (``eq=False``: it is a key of its owner's ``unsettled``), never encoded.
    """

    envelope: Envelope
    body: bytes
    exchange: str
    _q: MemoryQueue
    _owner: Owner | None = None
    _settled: bool = False

    @property
    def queue(self) -> str:
        """The queue it was consumed from."""
        return self._q.name

    def __repr__(self) -> str:
        state = "settled" if self._settled else "unsettled"
        return f"<MemoryDelivery queue={self.queue!r} {self.envelope!r} {state}>"

    def _release(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        owner = self._owner
        if owner is not None:
            owner.unsettled.pop(self, None)
        server = self._q.server
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
        q = self._q
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
        q = self._q
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
        q = self._q
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
            self._q.dead_letter(self, headers)


class Owner:
    """Whoever holds unsettled deliveries: a subscription, or ``get`` of a connection."""

    __slots__ = ("conn", "prefetch", "unsettled")

    def __init__(self, conn: MemoryBroker, prefetch: float) -> None:
        self.conn = conn
        self.prefetch = prefetch
        # Insertion-ordered: requeued in the order they were delivered.
        self.unsettled: dict[MemoryDelivery, None] = {}

    def take_unsettled(self) -> list[MemoryDelivery]:
        """Mark every unsettled delivery settled (later settling is a no-op); return them."""
        taken = list(self.unsettled)
        self.unsettled.clear()
        for d in taken:
            d._settled = True
        return taken


class MemorySubscription(Owner):
    """A consumer on one queue, with at most ``prefetch`` unsettled deliveries."""

    __slots__ = ("_cancelled", "_failed", "_q", "callback", "queue")

    def __init__(
        self, conn: MemoryBroker, q: MemoryQueue, callback: DeliveryCallback, prefetch: int
    ) -> None:
        super().__init__(conn, prefetch)
        self.queue = q.name
        self.callback = callback
        self._q = q
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
        conn = self.conn
        return not (self._cancelled or self._failed or conn._dropped or not conn._open)

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
        self._q.remove_consumer(self)
        if not self.unsettled and self in self.conn._subs:
            self.conn._subs.remove(self)
        _log.debug("subscription_cancelled", queue=self.queue)

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
        self._q.remove_consumer(self)
        self._q.requeue_front(self.take_unsettled())
        _log.error(
            "delivery_callback_failed",
            queue=self.queue,
            error=f"{type(exc).__name__}: {exc}",
            remedy="on_delivery must not raise; the subscription was stopped and its "
            "unsettled deliveries requeued",
            exc_info=exc,
        )


class MemoryQueue:
    """A queue of a memory server: ready messages and the consumers competing for them."""

    __slots__ = (
        "auto",
        "consumers",
        "delivery_limit",
        "max_length",
        "name",
        "ready",
        "rr",
        "server",
        "single_active",
        "spec",
    )

    def __init__(self, spec: QueueSpec, server: MemoryServer, *, auto: bool = False) -> None:
        self.name = spec.name
        self.server = server
        self.ready: deque[MemoryDelivery] = deque()
        self.consumers: list[MemorySubscription] = []
        self.rr = 0
        self.auto = auto
        self._use(spec)

    def adopt(self, spec: QueueSpec) -> None:
        """Take over an explicitly declared spec (for an automatically created DLQ)."""
        self.auto = False
        self._use(spec)

    def _use(self, spec: QueueSpec) -> None:
        # The spec's settings the hot path reads, copied to slots of the queue.
        self.spec = spec
        self.single_active = spec.single_active_consumer
        self.max_length = spec.max_length
        self.delivery_limit = spec.delivery_limit

    def put(self, d: MemoryDelivery) -> None:
        """Append a message; hand it to a consumer at once if one has room."""
        ready = self.ready
        server = self.server
        if server.changed is not None:
            server.notify()
        consumers = self.consumers
        if not ready and len(consumers) == 1 and not server.duplicates:
            # The common case: one consumer and nothing waiting: hand over if it has room.
            sub = consumers[0]
            if len(sub.unsettled) < sub.prefetch:
                sub.deliver(d)
                return
        ready.append(d)
        if consumers:
            self.dispatch()
        if self.max_length is not None:
            while len(ready) > self.max_length:
                # RabbitMQ's default overflow: drop (dead-letter) from the head.
                old = ready.popleft()
                old._settled = True
                self.dead_letter(old, {XH_REASON: REASON_MAXLEN})

    def dispatch(self) -> None:
        """Hand ready messages to consumers with prefetch room, round-robin."""
        ready = self.ready
        consumers = self.consumers
        duplicates = self.server.duplicates
        while ready and consumers:
            n = 1 if self.single_active else len(consumers)
            if n == 1:
                sub = consumers[0]
                if len(sub.unsettled) >= sub.prefetch:
                    return
            else:
                start = self.rr
                for k in range(n):
                    sub = consumers[(start + k) % n]
                    if len(sub.unsettled) < sub.prefetch:
                        self.rr = start + k + 1
                        break
                else:
                    return
            d = ready.popleft()
            if duplicates:
                duplicates = self.server.duplicate(self, d)
            sub.deliver(d)

    def requeue_front(self, deliveries: Sequence[MemoryDelivery]) -> None:
        """Put settled-by-force deliveries back at the head, in order, as redeliveries."""
        limit = self.delivery_limit
        again: list[MemoryDelivery] = []
        for d in deliveries:
            if limit is not None and d.envelope.attempt > limit:
                self.dead_letter(d, {XH_REASON: REASON_DELIVERY_LIMIT})
                continue
            env = derive(d.envelope, redelivered=True, attempt=d.envelope.attempt + 1)
            again.append(MemoryDelivery(env, d.body, d.exchange, self))
        self.ready.extendleft(reversed(again))

    def remove_consumer(self, sub: MemorySubscription) -> None:
        """Detach a consumer (cancel, failure, lost connection); its deliveries stay."""
        if sub in self.consumers:
            self.consumers.remove(sub)

    def dead_letter(self, d: MemoryDelivery, headers: Mapping[str, Any]) -> None:
        """Copy a settled message to this queue's DLQ, recording where it came from."""
        dlq = self.server.queues.get(self.spec.dlq_name) if self.spec.dead_letter else None
        env = d.envelope
        if dlq is None:
            _log.warning(
                "message_discarded",
                queue=self.name,
                message_id=env.message_id,
                reason=headers.get(XH_REASON),
                detail="the queue has no dead-letter queue (dead_letter=False)",
            )
            return
        merged = dict(env.headers)
        merged.update(headers)
        merged.setdefault(XH_ORIGINAL_EXCHANGE, d.exchange)
        merged.setdefault(XH_ORIGINAL_ROUTING_KEY, env.routing_key)
        merged[XH_ORIGINAL_QUEUE] = self.name
        dead = derive(env, redelivered=False, attempt=env.attempt, headers=merged)
        dlq.put(MemoryDelivery(dead, d.body, d.exchange, dlq))


class MemoryServer:
    """Exchanges, queues and messages: what a RabbitMQ node holds, shared by connections."""

    __slots__ = (
        "__weakref__",
        "changed",
        "duplicates",
        "exchanges",
        "name",
        "queues",
        "routers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, ExchangeSpec] = {}
        self.routers: dict[str, Router[MemoryQueue]] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.duplicates = 0
        # Set when a message is queued or settled, and only while someone waits for that
        # (MemoryBroker.wait_for_change): otherwise the hot path pays one attribute check.
        self.changed: anyio.Event | None = None

    def notify(self) -> None:
        """Wake whoever waits for a change of any queue of this server."""
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()

    def duplicate(self, q: MemoryQueue, d: MemoryDelivery) -> int:
        """Fault injection: put a redelivered copy of ``d`` at the head of ``q``."""
        self.duplicates -= 1
        env = derive(d.envelope, redelivered=True, attempt=d.envelope.attempt + 1)
        q.ready.appendleft(MemoryDelivery(env, d.body, d.exchange, q))
        return self.duplicates

    def declare(self, topology: Topology) -> None:
        for exchange in topology.exchanges:
            self._declare_exchange(exchange)
        for queue in topology.queues:
            self._declare_queue(queue)
        for binding in topology.bindings:
            self._bind(binding)

    def _declare_exchange(self, spec: ExchangeSpec) -> None:
        if spec.name == DEFAULT_EXCHANGE:
            raise TopologyError(
                "the default exchange '' cannot be declared: it exists implicitly and routes "
                "by queue name; remove it from the topology"
            )
        existing = self.exchanges.get(spec.name)
        if existing is None:
            self.exchanges[spec.name] = spec
            self.routers[spec.name] = Router(spec.type)
            return
        for f in fields(ExchangeSpec):
            old, new = getattr(existing, f.name), getattr(spec, f.name)
            if old != new:
                raise TopologyError(
                    f"exchange {spec.name!r} already exists with {f.name}={old!r}; cannot "
                    f"redeclare it with {f.name}={new!r}. Declare it with the same arguments, "
                    "or use a new exchange name"
                )

    def _declare_queue(self, spec: QueueSpec) -> None:
        existing = self.queues.get(spec.name)
        if existing is None:
            self.queues[spec.name] = MemoryQueue(spec, self)
        elif existing.auto:
            existing.adopt(spec)
        else:
            for f in fields(QueueSpec):
                old, new = getattr(existing.spec, f.name), getattr(spec, f.name)
                if old != new:
                    raise TopologyError(
                        f"queue {spec.name!r} already exists with {f.name}={old!r}; cannot "
                        f"redeclare it with {f.name}={new!r}. Declare it with the same "
                        "arguments, or use a new queue name (a broker keeps a queue's "
                        "arguments for its lifetime)"
                    )
        if spec.dead_letter and spec.dlq_name not in self.queues:
            dlq = QueueSpec(
                spec.dlq_name,
                durable=spec.durable,
                queue_type=spec.queue_type,
                dead_letter=False,
                retry_delays=(),
            )
            self.queues[dlq.name] = MemoryQueue(dlq, self, auto=True)

    def _bind(self, binding: Binding) -> None:
        if binding.exchange == DEFAULT_EXCHANGE:
            raise TopologyError(
                f"cannot bind queue {binding.queue!r} to the default exchange '': it routes "
                "by queue name already; bind to a declared exchange instead"
            )
        router = self.routers.get(binding.exchange)
        if router is None:
            raise ExchangeNotFoundError(binding.exchange, binding.routing_key)
        q = self.queues.get(binding.queue)
        if q is None:
            raise QueueNotFoundError(binding.queue)
        router.bind(binding.routing_key, q)


_SERVERS: weakref.WeakValueDictionary[str, MemoryServer] = weakref.WeakValueDictionary()


def server_for(name: str) -> MemoryServer:
    if not name:
        return MemoryServer("")
    server = _SERVERS.get(name)
    if server is None:
        server = MemoryServer(name)
        _SERVERS[name] = server
    return server
