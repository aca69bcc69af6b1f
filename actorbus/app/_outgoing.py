"""Outgoing: encodes messages and addresses them; the one place an outbound envelope is built."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..brokers import DEFAULT_EXCHANGE
from ..exceptions import ConfigurationError
from ..messages import (
    SCHEMA_VERSION_HEADER,
    Command,
    Envelope,
    JsonCodec,
    Message,
    OutboundMessage,
)
from ..observe import TRACEPARENT

if TYPE_CHECKING:
    from ..observe import Tracer

__all__ = ("Outgoing",)


class _Route:
    """Where messages of one type go; computed once per type."""

    __slots__ = ("exchange", "headers", "mandatory", "type")

    def __init__(self, exchange: str, type_: str, version: int, mandatory: bool) -> None:
        self.exchange = exchange
        self.type = type_
        self.mandatory = mandatory
        # Shared by every message of the type: brokers copy, never mutate, headers.
        self.headers = {SCHEMA_VERSION_HEADER: version}


class Outgoing:
    """Turns messages into :class:`~actorbus.messages.OutboundMessage` s: encode and address.

    The one builder of outbound envelopes: ``message_id`` is the ``eventId``, ``type`` the
    wire name, ``timestamp`` the time of publishing (``occurredAt`` stays in the payload),
    ``content_type`` the codec's, and the headers carry ``x-schema-version``.

    Events go to the events exchange under their routing key; commands to the command
    exchange under their name; replies to the default exchange under the ``reply_to`` queue.
    Each type's address is worked out once. With a tracer, every message gets the
    ``traceparent`` of a new span in the current trace (or of a new trace).

    Args:
        codec: Encodes message bodies.
        exchange: The events exchange.
        command_exchange: The commands exchange.
        tracer: Adds trace context headers; ``None`` adds none.
    """

    __slots__ = ("_codec", "_command_exchange", "_content_type", "_exchange", "_routes", "_tracer")

    def __init__(
        self,
        codec: JsonCodec,
        exchange: str,
        command_exchange: str,
        tracer: Tracer | None = None,
    ) -> None:
        self._codec = codec
        self._content_type = codec.content_type
        self._exchange = exchange
        self._command_exchange = command_exchange
        self._tracer = tracer
        self._routes: dict[type[Message], _Route] = {}

    def _route(self, message_type: type[Message]) -> _Route:
        key: str | None = getattr(message_type, "__routing_key__", None)
        if not key:
            raise ConfigurationError(
                f"cannot publish {message_type.__qualname__}: it declares no routing key"
            )
        command = issubclass(message_type, Command)
        exchange = self._command_exchange if command else self._exchange
        route = self._routes[message_type] = _Route(
            exchange, key, message_type.__version__, mandatory=command
        )
        return route

    def build(
        self,
        message: Message,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        reply_to: str | None = None,
        to_queue: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> OutboundMessage:
        """Encode ``message`` and address it.

        Args:
            message: The event, command or reply.
            correlation_id: The business flow's id (e.g. the order id).
            causation_id: The id of the message whose handling produced this one.
            reply_to: The queue a command's reply should be sent to.
            to_queue: Send straight to this queue through the default exchange (replies).
            headers: Extra headers merged over the type's headers; a ``traceparent`` among
                them is kept as it is.
        """
        cls = type(message)
        route = self._routes.get(cls) or self._route(cls)
        tracer = self._tracer
        if tracer is None:
            hdrs = route.headers if headers is None else {**route.headers, **headers}
        elif headers:
            hdrs = {**route.headers, **headers}
            if TRACEPARENT not in hdrs:
                tracer.inject(hdrs, route.type, to_queue or route.exchange)
        else:
            hdrs = route.headers.copy()
            tracer.inject(hdrs, route.type, to_queue or route.exchange)
        envelope = Envelope(
            message.message_id,
            route.type,
            to_queue if to_queue is not None else route.type,
            correlation_id=correlation_id,
            causation_id=causation_id,
            reply_to=reply_to,
            content_type=self._content_type,
            headers=hdrs,
            timestamp=time.time(),
        )
        if to_queue is not None:
            return OutboundMessage(DEFAULT_EXCHANGE, envelope, self._codec.encode(message))
        # An event nobody subscribes to is not an error (the publisher does not know who
        # listens); a command or a reply that reaches no queue is.
        return OutboundMessage(
            route.exchange, envelope, self._codec.encode(message), mandatory=route.mandatory
        )
