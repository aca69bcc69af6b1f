"""AMQP properties ↔ :class:`~actorbus.messages.Envelope`, both directions.

:func:`build_properties` maps an envelope to the persistent properties a message is published
with; :func:`read_envelope` maps a ``basic.deliver`` / ``basic.get-ok`` frame and its
properties back to an envelope. The two agree on what AMQP has no property for: the causation
id travels in the ``x-causation-id`` header, the attempt in ``x-actorbus-attempt``, and a
retried copy names the exchange and routing key it was first published with. Both run once per
message: keep them free of allocations they do not need.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pamqp.commands import Basic

from ...messages import Envelope
from .._deadletter import XH_ATTEMPT, XH_ORIGINAL_EXCHANGE, XH_ORIGINAL_ROUTING_KEY

__all__ = ("XH_CAUSATION_ID", "build_properties", "read_envelope")

#: Header carrying :attr:`Envelope.causation_id` (AMQP has no property for it).
XH_CAUSATION_ID = "x-causation-id"
#: A quorum queue's count of earlier deliveries of the message.
_X_DELIVERY_COUNT = "x-delivery-count"

_EMPTY: Mapping[str, Any] = {}
_Properties = Basic.Properties
_gmtime = time.gmtime


def build_properties(
    envelope: Envelope, headers: Mapping[str, Any] | None = None
) -> Basic.Properties:
    """Map an envelope to persistent AMQP properties.

    Args:
        envelope: The message's metadata.
        headers: Headers to use instead of ``envelope.headers`` (already merged).
    """
    if headers is None:
        headers = envelope.headers
        causation = envelope.causation_id
        if causation is not None:
            headers = {**headers, XH_CAUSATION_ID: causation}
    elif envelope.causation_id is not None and XH_CAUSATION_ID not in headers:
        headers = {**headers, XH_CAUSATION_ID: envelope.causation_id}
    ts = envelope.timestamp
    return _Properties(
        content_type=envelope.content_type,
        headers=headers or None,  # type: ignore[arg-type]  # any Mapping encodes
        delivery_mode=2,
        correlation_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        message_id=envelope.message_id,
        timestamp=_gmtime(ts) if ts is not None else None,  # type: ignore[arg-type]
        message_type=envelope.type,
    )


def _as_int(value: Any) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def read_envelope(
    frame: Basic.Deliver | Basic.GetOk, props: Basic.Properties
) -> tuple[Envelope, str]:
    """Map a delivered frame and its properties to an envelope.

    Returns:
        The envelope, and the exchange the message was published to (for a retried copy,
        back from its retry queue, the exchange of the original publish).
    """
    headers: Any = props.headers
    routing_key: str = frame.routing_key  # type: ignore[assignment]
    exchange: str = frame.exchange
    redelivered: bool = frame.redelivered
    causation = None
    if headers:
        attempt = headers.get(XH_ATTEMPT, 1)
        if attempt.__class__ is not int:  # a foreign producer's idea of the header
            attempt = _as_int(attempt)
        count = headers.get(_X_DELIVERY_COUNT)
        if count.__class__ is int:
            attempt += count
        elif redelivered:
            attempt += 1
        original = headers.get(XH_ORIGINAL_ROUTING_KEY)
        if original is not None:  # a retried copy, back from its retry queue
            routing_key = original
            exchange = headers.get(XH_ORIGINAL_EXCHANGE, exchange)
        causation = headers.get(XH_CAUSATION_ID)
    else:
        headers = _EMPTY
        attempt = 2 if redelivered else 1
    ts = props.timestamp
    envelope = Envelope(
        props.message_id or "",
        props.message_type or routing_key,
        routing_key,
        correlation_id=props.correlation_id,
        causation_id=causation,
        reply_to=props.reply_to,
        content_type=props.content_type or "application/octet-stream",
        headers=headers,
        timestamp=ts.timestamp() if ts is not None else None,
        redelivered=redelivered,
        attempt=attempt,
    )
    return envelope, exchange
