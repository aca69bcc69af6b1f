"""The shared in-process server: exchanges with their routing tables, queues, lookup by name.

What a RabbitMQ node holds, in process. ``memory://`` gets a private :class:`MemoryServer`;
``memory://<name>`` gets the one of that name (:func:`server_for`), shared by every open
connection of that name and kept alive as long as one of them is.
"""

from __future__ import annotations

import weakref
from dataclasses import fields

import anyio

from ...exceptions import ExchangeNotFoundError, QueueNotFoundError, TopologyError
from .._protocol import (
    DEFAULT_EXCHANGE,
    Binding,
    ExchangeSpec,
    QueueSpec,
    ReplyCallback,
    Topology,
)
from .._routing import Router
from ._delivery import MemoryDelivery, derive
from ._queue import MemoryQueue

__all__ = ("MemoryServer", "server_for")


class MemoryServer:
    """Exchanges, queues and messages: what a RabbitMQ node holds, shared by connections."""

    __slots__ = (
        "__weakref__",
        "changed",
        "duplicates",
        "exchanges",
        "name",
        "queues",
        "replies",
        "routers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, ExchangeSpec] = {}
        self.routers: dict[str, Router[MemoryQueue]] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.duplicates = 0
        # Open reply channels by address (request/reply; see MemoryBroker.open_reply_channel).
        self.replies: dict[str, ReplyCallback] = {}
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
    """Return the server called ``name``, creating it; ``""`` gets a new private one."""
    if not name:
        return MemoryServer("")
    server = _SERVERS.get(name)
    if server is None:
        server = MemoryServer(name)
        _SERVERS[name] = server
    return server
