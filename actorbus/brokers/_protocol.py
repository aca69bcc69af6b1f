"""The broker seam: what every transport must do, as Protocols and plain values.

A broker moves bytes plus an :class:`~actorbus.messages.Envelope`. It knows nothing of
actors, services or message classes. What a broker must *do* is pinned by the conformance
suite in :mod:`actorbus.testing`; a third-party broker satisfies these Protocols without
inheriting from anything of ours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ..messages import Envelope, OutboundMessage

if TYPE_CHECKING:
    from typing import Self

__all__ = (
    "DEFAULT_EXCHANGE",
    "DEFAULT_RETRY_DELAYS",
    "Binding",
    "Broker",
    "Delivery",
    "DeliveryCallback",
    "ExchangeSpec",
    "ExchangeType",
    "OutboundMessage",
    "QueueSpec",
    "QueueType",
    "REPLY_ADDRESS_PREFIX",
    "ReplyCallback",
    "ReplyChannel",
    "ReplyChannels",
    "Subscription",
    "Topology",
    "nearest_tier",
)

#: The nameless exchange: routes a message to the queue named by its routing key.
#: Commands and replies travel through it.
DEFAULT_EXCHANGE = ""

#: Where request/reply channels receive: RabbitMQ's direct reply-to pseudo-queue. A reply
#: published to the default exchange under a routing key with this prefix counts as routed
#: even when its requester has gone (at-most-once, as on RabbitMQ): it is never an error.
REPLY_ADDRESS_PREFIX = "amq.rabbitmq.reply-to"

#: Retry delay tiers (seconds) of a queue unless its spec says otherwise.
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0, 10.0, 30.0)


def nearest_tier(tiers: Sequence[float], delay: float) -> float:
    """Return the retry tier closest to ``delay`` on a log scale (ties go to the longer one).

    A jittered delay stays in its tier: with tiers 0.5 s and 2 s, a delay of 0.55 s waits
    0.5 s (not four times as long), and 1.2 s waits 2 s. Delays beyond the tiers use the
    nearest end. ``tiers`` must not be empty.
    """
    wanted = max(delay, 1e-9)
    return min(tiers, key=lambda tier: (abs(math.log(max(tier, 1e-9) / wanted)), -tier))


ExchangeType = Literal["topic", "direct", "fanout"]
QueueType = Literal["classic", "quorum"]


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange to declare.

    Attributes:
        name: The exchange's name, e.g. ``"orders.topic"``.
        type: How it routes: ``topic`` (patterns with ``*`` and ``#``), ``direct`` or ``fanout``.
        durable: Whether it survives a broker restart.
    """

    name: str
    type: ExchangeType = "topic"
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue to declare, with its dead-letter queue and retry tiers.

    Attributes:
        name: The queue's name, e.g. ``"inventory.queue"``.
        durable: Whether it survives a broker restart.
        queue_type: ``classic`` or ``quorum`` (what a cluster needs).
        dead_letter: Declare ``<name>.dlq`` and dead-letter rejected messages there.
        retry_delays: Delay tiers in seconds for :meth:`Delivery.retry`; a retry waits in
            the tier nearest to the delay asked for (see :func:`nearest_tier`).
        delivery_limit: Quorum queues only: dead-letter a message after this many
            redeliveries (poison-message protection at the broker).
        single_active_consumer: Only one consumer receives at a time (per-key ordering);
            the others stand by and take over when it goes away.
        max_length: Bound on ready messages; ``None`` for no bound.
    """

    name: str
    durable: bool = True
    queue_type: QueueType = "classic"
    dead_letter: bool = True
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    delivery_limit: int | None = None
    single_active_consumer: bool = False
    max_length: int | None = None

    @property
    def dlq_name(self) -> str:
        """The name of this queue's dead-letter queue."""
        return f"{self.name}.dlq"


@dataclass(frozen=True, slots=True)
class Binding:
    """Route messages from ``exchange`` whose routing key matches ``routing_key`` to ``queue``.

    For a topic exchange ``routing_key`` is a pattern: ``*`` matches one word, ``#`` zero or
    more words.
    """

    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything a set of services needs declared on the broker."""

    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[Binding, ...] = ()

    def merge(self, other: Topology) -> Topology:
        """Return the union of both topologies, without duplicates, in declaration order."""
        return Topology(
            exchanges=tuple(dict.fromkeys(self.exchanges + other.exchanges)),
            queues=tuple(dict.fromkeys(self.queues + other.queues)),
            bindings=tuple(dict.fromkeys(self.bindings + other.bindings)),
        )


@runtime_checkable
class Delivery(Protocol):
    """One message handed to a consumer, to be settled exactly once.

    Settling (``ack``, ``nack``, ``retry``, ``dead_letter``) a second time is a no-op.
    A delivery not settled when its subscription or broker closes is requeued.
    """

    @property
    def envelope(self) -> Envelope:
        """The message's metadata, including ``redelivered`` and ``attempt``."""
        ...

    @property
    def body(self) -> bytes:
        """The raw payload."""
        ...

    @property
    def queue(self) -> str:
        """The queue it was consumed from."""
        ...

    @property
    def exchange(self) -> str:
        """The exchange it was published to."""
        ...

    async def ack(self) -> None:
        """Confirm that the message was processed; the broker forgets it."""
        ...

    async def nack(self, *, requeue: bool = True) -> None:
        """Give the message back: requeue it (redelivered), or dead-letter it at the broker."""
        ...

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Deliver the message again after at least ``delay`` seconds, as the next attempt.

        The delivery is settled at once; the message waits at the broker (not in this
        process's memory) and comes back with ``envelope.attempt`` increased by one.
        """
        ...

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to its queue's dead-letter queue with ``headers`` added.

        The copy in the dead-letter queue keeps the body, ``message_id`` and properties and
        records the original exchange, routing key and queue. It is confirmed before the
        delivery is acked, so a crash in between duplicates rather than loses it.
        """
        ...


DeliveryCallback = Callable[[Delivery], None]
"""Called by the broker for each delivery; must not block and should not raise."""


@runtime_checkable
class Subscription(Protocol):
    """A running consumer on one queue."""

    @property
    def queue(self) -> str:
        """The queue consumed from."""
        ...

    @property
    def active(self) -> bool:
        """Whether deliveries are flowing (false while reconnecting or after a cancel)."""
        ...

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries in flight may still be settled."""
        ...


@runtime_checkable
class Broker(Protocol):
    """A message broker: declare topology, publish with confirmation, consume with prefetch.

    A broker is used as an async context manager: entering connects (and starts whatever
    background work it needs), leaving cancels consumers, requeues unsettled deliveries and
    closes. Every method may raise :class:`~actorbus.exceptions.BrokerError` subclasses.
    """

    @property
    def url(self) -> str:
        """The broker's URL with credentials redacted; safe to log."""
        ...

    @property
    def is_ready(self) -> bool:
        """Connected, and every subscription actually consuming."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues (with dead-letter and retry queues) and bindings.

        Declaring the same topology twice is harmless.

        Raises:
            TopologyError: A declaration clashes with what exists on the broker.
        """
        ...

    async def publish(self, message: OutboundMessage) -> None:
        """Publish one message and wait until the broker confirmed it.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue received it.
            PublishNackedError: The broker refused it.
            BrokerConnectionError: The connection was lost before the confirm arrived.
        """
        ...

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish several messages pipelined and wait until all are confirmed.

        Raises:
            PublishError: At least one was not confirmed; the first failure is raised after
                every message was either confirmed or failed.
        """
        ...

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> Subscription:
        """Start consuming ``queue``: at most ``prefetch`` unsettled deliveries at a time.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        ...

    async def get(self, queue: str) -> Delivery | None:
        """Take one message from ``queue`` without a subscription, or ``None`` if empty."""
        ...

    async def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages in ``queue``."""
        ...

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; return how many were deleted."""
        ...


ReplyCallback = Callable[[Envelope, bytes], None]
"""Called by a reply channel for each reply; must not block and should not raise."""


@runtime_checkable
class ReplyChannel(Protocol):
    """Where a requester publishes requests and receives their replies (at most once).

    Replies are not acknowledged: a reply whose requester has gone, or that arrives while
    the channel reconnects, is lost, and the requester's timeout covers it. On RabbitMQ this
    is direct reply-to (``amq.rabbitmq.reply-to``), which requires requests to be published
    on the very channel that consumes the replies: hence :meth:`publish` here, not on the
    broker.
    """

    @property
    def address(self) -> str:
        """What requests carry as ``reply_to`` (the broker may rewrite it on the way)."""
        ...

    async def publish(self, message: OutboundMessage) -> None:
        """Publish a request (``message.envelope.reply_to`` set to :attr:`address`).

        Raises:
            UnroutableError: ``message.mandatory`` and no queue received it.
            PublishError: The broker refused it.
        """
        ...

    async def close(self) -> None:
        """Stop receiving replies; later replies to this channel are dropped."""
        ...


@runtime_checkable
class ReplyChannels(Protocol):
    """A broker capability: open a :class:`ReplyChannel` (no queue per request or process).

    Optional: a broker without it gets request/reply through a reply queue of its own
    declared with :meth:`Broker.declare` (see ``actorbus.app``).
    """

    async def open_reply_channel(self, on_reply: ReplyCallback) -> ReplyChannel:
        """Open a channel whose replies are passed to ``on_reply``."""
        ...
