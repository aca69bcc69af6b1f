"""A queue of a memory server: ready messages and the consumers competing for them.

:class:`MemoryQueue` keeps its ready messages in order and hands them to consumers with
prefetch room, round-robin (or to the single active consumer); it requeues at the head,
enforces ``max_length`` and ``delivery_limit``, and dead-letters to ``<queue>.dlq``. It reaches
its server only through :class:`Host`, which :class:`~._server.MemoryServer` implements.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..._log import get_logger
from .._deadletter import (
    REASON_DELIVERY_LIMIT,
    REASON_MAXLEN,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from .._protocol import QueueSpec
from ._delivery import (
    MemoryDelivery,
    MemorySubscription,
    Notifier,
    derive,
)

__all__ = ("Host", "MemoryQueue")

_log = get_logger("actorbus.brokers", broker="memory")


class Host(Notifier, Protocol):
    """What a queue needs from its server: change notification, the queue of its dead
    letters, and the duplicate-delivery fault."""

    @property
    def queues(self) -> Mapping[str, MemoryQueue]: ...

    @property
    def duplicates(self) -> int:
        """How many of the next dispatched messages are still to be delivered twice."""
        ...

    def duplicate(self, q: MemoryQueue, d: MemoryDelivery) -> int:
        """Put a redelivered copy of ``d`` at the head of ``q``; return ``duplicates`` left."""
        ...


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

    def __init__(self, spec: QueueSpec, server: Host, *, auto: bool = False) -> None:
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
                old.discard()
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
