"""Message model and wire format: typed events and commands, codec, registry, upcasting.

Declare message types as class keywords, register them, and decode on the hot path with a
decoder built once per wire name::

    from actorbus.messages import Event, MessageRegistry

    class OrderCreated(Event, routing_key="order.created", version=1):
        order_id: str
        sku: str
        qty: int

    registry = MessageRegistry()
    registry.register(OrderCreated)
    decode = registry.decoder("order.created").decode
    body = registry.encode(OrderCreated(order_id="o-1", sku="apple", qty=2))
    assert decode(body).qty == 2

Only :mod:`msgspec`, the standard library and :mod:`actorbus.exceptions` are imported here.
"""

from __future__ import annotations

from ._base import FILLED_ON_CONSTRUCTION as FILLED_ON_CONSTRUCTION
from ._base import ROUTING_KEY_PATTERN as ROUTING_KEY_PATTERN
from ._base import Command as Command
from ._base import Event as Event
from ._base import Message as Message
from ._base import MessageMeta as MessageMeta
from ._codec import DEFAULT_MAX_SIZE as DEFAULT_MAX_SIZE
from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._codec import schema_of as schema_of
from ._envelope import Envelope as Envelope
from ._envelope import OutboundMessage as OutboundMessage
from ._registry import SCHEMA_VERSION_HEADER as SCHEMA_VERSION_HEADER
from ._registry import DecodeFunction as DecodeFunction
from ._registry import MessageDecoder as MessageDecoder
from ._registry import MessageRegistry as MessageRegistry
from ._upcast import Upcaster as Upcaster

__all__ = (
    "Codec",
    "Command",
    "DEFAULT_MAX_SIZE",
    "DecodeFunction",
    "Envelope",
    "Event",
    "FILLED_ON_CONSTRUCTION",
    "JsonCodec",
    "Message",
    "OutboundMessage",
    "MessageDecoder",
    "MessageMeta",
    "MessageRegistry",
    "ROUTING_KEY_PATTERN",
    "SCHEMA_VERSION_HEADER",
    "Upcaster",
    "schema_of",
)
