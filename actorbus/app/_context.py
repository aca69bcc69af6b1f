"""HandlerContext: what a handler may do with the message it handles."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from .._log import get_logger
from ..brokers import DEFAULT_EXCHANGE, OutboundMessage
from ..exceptions import ConfigurationError
from ..messages import SCHEMA_VERSION_HEADER, Command, Envelope, JsonCodec, Message
from ._tracing import TRACEPARENT, current_trace

if TYPE_CHECKING:
    from ._app import ServiceContext
    from ._tracing import Tracer

__all__ = ("HandlerContext", "HandlerSite", "Outgoing")


_log = get_logger("actorbus.app")


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
    """Turns messages into :class:`~actorbus.brokers.OutboundMessage` s: encode and address.

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

    __slots__ = ("_codec", "_command_exchange", "_exchange", "_routes", "_tracer")

    def __init__(
        self,
        codec: JsonCodec,
        exchange: str,
        command_exchange: str,
        tracer: Tracer | None = None,
    ) -> None:
        self._codec = codec
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


class HandlerSite:
    """What every delivery of one queue's pipeline shares: built once, referenced per context.

    Attributes:
        context: The handling service's context.
        queue: The queue the pipeline consumes.
        outgoing: Encodes and addresses what handlers publish.
    """

    __slots__ = ("context", "outgoing", "queue")

    def __init__(self, context: ServiceContext, queue: str, outgoing: Outgoing) -> None:
        self.context = context
        self.queue = queue
        self.outgoing = outgoing


class HandlerContext(msgspec.Struct, eq=False):
    """Given to a handler with its message: publish, send, reply; all flushed before the ack.

    What a handler publishes is buffered; when it returns, the pipeline publishes the buffer
    with confirms, records the message in the inbox, and only then acks the delivery. If the
    handler raises, nothing it buffered is published.

    One is created per delivery, so it holds only the envelope, the buffer and a reference to
    what the queue's deliveries share, and it is a msgspec Struct (built in C; compared by
    identity).

    Attributes:
        envelope: The delivery's metadata (ids, attempt, redelivered, headers).
        buffer: What the handler published, sent or replied so far, in order.
    """

    envelope: Envelope
    _site: HandlerSite
    buffer: list[OutboundMessage] = msgspec.field(default_factory=list)
    _log: Any = None  # built on first use of `log`

    @property
    def context(self) -> ServiceContext:
        """The handling service's :class:`~actorbus.app.ServiceContext` (its ``state``,
        ``data_dir``, ``publish`` for use outside a handler)."""
        return self._site.context

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self._site.queue

    @property
    def service(self) -> str:
        """The name of the service handling the message."""
        return str(self.context.service.name)

    @property
    def state(self) -> dict[str, Any]:
        """The handling service's state (``ctx.context.state``): its store, its connections."""
        return self._site.context.state

    @property
    def message_id(self) -> str:
        """The id (``eventId``) of the message being handled."""
        return self.envelope.message_id

    @property
    def correlation_id(self) -> str | None:
        """The business flow's id, carried from message to message."""
        return self.envelope.correlation_id

    @property
    def attempt(self) -> int:
        """1 on the first delivery, then 2, 3, … on retries and redeliveries."""
        return self.envelope.attempt

    @property
    def trace_id(self) -> str | None:
        """The id of the trace this delivery belongs to (``None`` without tracing)."""
        trace = current_trace()
        return trace.trace_id if trace is not None else None

    @property
    def log(self) -> Any:
        """A structlog logger bound to this delivery's ids and trace id (built on first use)."""
        if self._log is None:
            env = self.envelope
            log = _log.bind(
                service=self.service,
                message_id=env.message_id,
                message_type=env.type,
                correlation_id=env.correlation_id,
                causation_id=env.causation_id,
                attempt=env.attempt,
            )
            trace = current_trace()
            if trace is not None:
                log = log.bind(trace_id=trace.trace_id, span_id=trace.span_id)
            self._log = log
        return self._log

    def publish(self, event: Message, *, correlation_id: str | None = None) -> None:
        """Publish ``event`` once the handler has succeeded.

        Args:
            event: The event to publish.
            correlation_id: Overrides the correlation id inherited from the delivery.
        """
        self.buffer.append(
            self._site.outgoing.build(
                event,
                correlation_id=correlation_id or self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
            )
        )

    def send(
        self, command: Command, *, expect_reply: bool = False, correlation_id: str | None = None
    ) -> None:
        """Send ``command`` to the one service that handles it, once the handler has succeeded.

        Args:
            command: The command.
            expect_reply: Ask the receiver to reply to this service's queue.
            correlation_id: Overrides the correlation id inherited from the delivery.
        """
        self.buffer.append(
            self._site.outgoing.build(
                command,
                correlation_id=correlation_id or self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                reply_to=self.queue if expect_reply else None,
            )
        )

    def reply(self, message: Message) -> None:
        """Reply to the command being handled (to its ``reply_to`` queue).

        Raises:
            ConfigurationError: The command asked for no reply.
        """
        reply_to = self.envelope.reply_to
        if not reply_to:
            raise ConfigurationError(
                f"cannot reply to {self.envelope.type!r} (message_id "
                f"{self.envelope.message_id!r}): it carries no reply_to queue"
            )
        self.buffer.append(
            self._site.outgoing.build(
                message,
                correlation_id=self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                to_queue=reply_to,
            )
        )
