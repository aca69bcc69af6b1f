"""Transport-neutral message metadata: what travels beside the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ("Envelope",)

_EMPTY: Mapping[str, Any] = {}


class Envelope:
    """Metadata of one message, independent of the broker that carries it.

    Brokers map it to their native properties (for AMQP: ``message_id``, ``type``,
    ``correlation_id``, ``reply_to``, ``timestamp``, ``content_type``, ``headers``).
    One is created per message on the hot path, so it is slotted and does no validation.

    Attributes:
        message_id: The ``eventId`` of the message; the idempotency key.
        type: The wire name of the message type (the event's routing key or command name).
        routing_key: The routing key it was published with.
        correlation_id: The id of the business flow (the order id in the reference system).
        causation_id: The ``message_id`` of the message whose handling produced this one.
        reply_to: The queue a command's reply goes to, if a reply is expected.
        content_type: The MIME type of the body.
        headers: Extra headers (schema version, trace context, error records).
        timestamp: Seconds since the epoch when it was published (``None`` if unknown).
        redelivered: Set by the broker when this delivery was delivered before.
        attempt: 1 on the first delivery; increases with every retry or redelivery.
    """

    __slots__ = (
        "attempt",
        "causation_id",
        "content_type",
        "correlation_id",
        "headers",
        "message_id",
        "redelivered",
        "reply_to",
        "routing_key",
        "timestamp",
        "type",
    )

    def __init__(
        self,
        message_id: str,
        type: str,
        routing_key: str,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        reply_to: str | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, Any] = _EMPTY,
        timestamp: float | None = None,
        redelivered: bool = False,
        attempt: int = 1,
    ) -> None:
        self.message_id = message_id
        self.type = type
        self.routing_key = routing_key
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.reply_to = reply_to
        self.content_type = content_type
        self.headers = headers
        self.timestamp = timestamp
        self.redelivered = redelivered
        self.attempt = attempt

    def __repr__(self) -> str:
        return (
            f"Envelope(message_id={self.message_id!r}, type={self.type!r}, "
            f"routing_key={self.routing_key!r}, correlation_id={self.correlation_id!r}, "
            f"attempt={self.attempt})"
        )
