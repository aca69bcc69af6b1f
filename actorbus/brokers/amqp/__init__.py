"""The RabbitMQ broker (AMQP 0-9-1 through aiormq): ``amqp://`` and ``amqps://`` URLs.

This package is the only part of actorbus that imports asyncio or aiormq.
"""

from __future__ import annotations

from ._broker import AmqpBroker as AmqpBroker
from ._consumer import AmqpSubscription as AmqpSubscription
from ._delivery import AmqpDelivery as AmqpDelivery

__all__ = ("AmqpBroker", "AmqpDelivery", "AmqpSubscription")
