"""The NATS JetStream broker: ``nats://host:4222`` (``tls://`` for TLS), on nats-py.

An exchange is a stream, a queue a set of durable pull consumers, a publish is awaited for
its JetStream ack and deduplicated by ``Nats-Msg-Id`` (the message id); retries wait at the
server (``-NAK`` with a delay) and dead letters go to the ``ACTORBUS_DLQ`` stream with the
``x-actorbus-*`` headers of every broker. ``docs/nats.md`` has the mapping and the options;
:mod:`._mapping` (names and headers) ← :mod:`._topology` (streams, consumers, the queue
records) ← :mod:`._delivery`, :mod:`._consumer` (pull loops) ← :mod:`._broker`.
"""

from __future__ import annotations

from ._broker import NatsBroker as NatsBroker
from ._consumer import NatsSubscription as NatsSubscription
from ._delivery import NatsDelivery as NatsDelivery

__all__ = ("NatsBroker", "NatsDelivery", "NatsSubscription")
