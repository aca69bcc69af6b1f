"""The in-process broker: AMQP semantics with anyio only, and nothing to install.

:class:`MemoryBroker` is the default broker of ``actorbus run`` — a product feature, not a
test double. It routes through topic, direct and fanout exchanges and the default exchange,
keeps queues with competing consumers (round-robin), bounds unsettled deliveries by prefetch,
requeues, retries after a delay (driven by a :class:`~actorbus._clock.Clock`) and
dead-letters to ``<queue>.dlq``, exactly as the conformance suite in :mod:`actorbus.testing`
pins for every broker.

State and connections. A ``MemoryBroker`` instance is one *connection* to an in-process
*server* that holds the exchanges, queues and messages. ``memory://`` gets a private server;
``memory://<name>`` shares the server with every other open ``MemoryBroker`` of the same name
in the process (the server lives as long as one of them does). Closing a connection cancels
its subscriptions and requeues the deliveries it left unsettled, like closing an AMQP channel.

The hot path is synchronous: ``publish`` routes through a cached routing table and, when a
consumer has prefetch room, calls its ``on_delivery`` callback with a slotted delivery right
away — no task, lock, dict copy or log line per message.

Layout. :class:`MemoryBroker` is the connection (:mod:`._connection`); the server it connects
to (:mod:`._server`), its queues (:mod:`._queue`), deliveries and subscriptions
(:mod:`._delivery`) and fault injection (:class:`MemoryFaults`, :mod:`._faults`) are private
modules of this package. Imports point one way: ``_delivery`` ← ``_queue`` ← ``_server`` ←
``_faults`` ← ``_connection``; a lower module reaches a higher one only through a Protocol
(``_delivery.Queue``, ``_delivery.Connection``, ``_queue.Host``).
"""

from __future__ import annotations

from ._connection import MemoryBroker as MemoryBroker
from ._faults import MemoryFaults as MemoryFaults

__all__ = ("MemoryBroker", "MemoryFaults")
