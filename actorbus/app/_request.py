"""Request/reply: send a command, await its typed reply or a timeout, on any broker.

One :class:`Requester` per App. It opens one reply channel on first use (RabbitMQ's direct
reply-to, or the memory broker's equivalent; a reply queue of its own on a broker without
that capability) and keeps the requests in flight in a dict keyed by the request's
``message_id`` (its ``eventId``). A reply is matched by its ``causation_id``, which
``ctx.reply()`` sets to the id of the command it answers; the business ``correlation_id``
(the order id) travels untouched.

* Concurrent requests share the channel and never wait for each other: no lock on the path
  (FastStream serialised requests behind one, #1318).
* The timer starts once the broker confirmed the request, and runs on the App's clock, so a
  :class:`~actorbus.testing.ManualClock` drives it in tests.
* A reply that arrives after its request gave up finds no entry: it is dropped, counted
  (:attr:`RequestStats.late_replies`) and logged, never handed to another caller.
* A command that no queue receives fails at once with
  :class:`~actorbus.exceptions.UnroutableError` (commands are published ``mandatory``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import msgspec

from .._clock import Clock, SystemClock
from .._log import get_logger
from ..brokers import (
    Broker,
    Delivery,
    OutboundMessage,
    QueueSpec,
    ReplyCallback,
    ReplyChannel,
    ReplyChannels,
    Topology,
)
from ..exceptions import DecodeError, RequestTimeoutError, UnexpectedReplyError
from ..messages import Command, Envelope, JsonCodec, Message

if TYPE_CHECKING:
    from ..brokers import Subscription

__all__ = ("ReplyTypes", "RequestStats", "Requester", "wait_for")

_log = get_logger("actorbus.app")

#: The reply type a request expects, or several (the reply is any one of them).
ReplyTypes = type[Message] | tuple[type[Message], ...]


async def wait_for(event: anyio.Event, timeout: float, clock: Clock | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds of ``clock`` passed.

    Returns:
        Whether the event was set.
    """
    if clock is None or type(clock) is SystemClock:
        with anyio.move_on_after(timeout):
            await event.wait()
        return event.is_set()
    async with anyio.create_task_group() as tg:

        async def timer() -> None:
            await clock.sleep(timeout)
            tg.cancel_scope.cancel()

        tg.start_soon(timer)
        await event.wait()
        tg.cancel_scope.cancel()
    return event.is_set()


class RequestStats(msgspec.Struct):
    """What a :class:`Requester` did so far.

    Attributes:
        sent: Requests published.
        replied: Requests that got their reply in time.
        timed_out: Requests that gave up waiting.
        late_replies: Replies that came after their request gave up (or for no request of
            this process): dropped.
        in_flight: Requests waiting for their reply now.
    """

    sent: int = 0
    replied: int = 0
    timed_out: int = 0
    late_replies: int = 0
    in_flight: int = 0


class _Pending:
    __slots__ = ("body", "envelope", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.envelope: Envelope | None = None
        self.body = b""


class Requester:
    """Sends requests and matches replies, for one App (see the module's docstring).

    Args:
        broker: The App's broker (entered before the first request).
        codec: Decodes replies.
        clock: Times the waits; the event loop's clock if ``None``.
    """

    def __init__(self, broker: Broker, codec: JsonCodec, clock: Clock | None = None) -> None:
        self._broker = broker
        self._codec = codec
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._channel: ReplyChannel | None = None
        self._opening: anyio.Lock | None = None
        self.stats = RequestStats()

    async def channel(self) -> ReplyChannel:
        """Return the reply channel, opening it on first use (concurrent callers open one)."""
        channel = self._channel
        if channel is not None:
            return channel
        if self._opening is None:
            self._opening = anyio.Lock()
        async with self._opening:  # only until the channel is open: never per request
            if self._channel is None:
                broker = self._broker
                if isinstance(broker, ReplyChannels):
                    self._channel = await broker.open_reply_channel(self._on_reply)
                else:
                    self._channel = await QueueReplyChannel.open(broker, self._on_reply)
                _log.debug("reply_channel_opened", address=self._channel.address)
            return self._channel

    async def close(self) -> None:
        """Close the reply channel; requests still waiting time out."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def _on_reply(self, envelope: Envelope, body: bytes) -> None:
        key = envelope.causation_id
        pending = self._pending.pop(key, None) if key else None
        if pending is None:
            self.stats.late_replies += 1
            _log.warning(
                "late_reply_dropped",
                reply_type=envelope.type,
                message_id=envelope.message_id,
                request_id=key,
                correlation_id=envelope.correlation_id,
            )
            return
        pending.envelope = envelope
        pending.body = body
        pending.event.set()

    async def request(
        self,
        build: Callable[[str], OutboundMessage],
        command: Command,
        reply: ReplyTypes,
        timeout: float,
    ) -> Message:
        """Publish the request ``build(reply_address)`` and return its decoded reply.

        Raises:
            RequestTimeoutError: No reply within ``timeout`` seconds of the clock.
            UnroutableError: No queue receives the command.
            UnexpectedReplyError: The reply is none of the ``reply`` types.
        """
        channel = self._channel or await self.channel()
        message = build(channel.address)
        key = message.envelope.message_id
        pending = self._pending[key] = _Pending()
        stats = self.stats
        stats.in_flight = len(self._pending)
        try:
            await channel.publish(message)
            stats.sent += 1
            if not await wait_for(pending.event, timeout, self._clock):
                stats.timed_out += 1
                raise RequestTimeoutError(
                    type(command).__qualname__,
                    message.envelope.routing_key,
                    message.exchange,
                    timeout,
                    key,
                )
        finally:
            # Gone before the reply: a reply arriving now is late (dropped and counted).
            self._pending.pop(key, None)
            stats.in_flight = len(self._pending)
        stats.replied += 1
        envelope = pending.envelope
        if envelope is None:  # pragma: no cover - set with the event
            raise RuntimeError("reply event set without a reply")
        return self._decode(envelope, pending.body, reply, command)

    def _decode(
        self, envelope: Envelope, body: bytes, reply: ReplyTypes, command: Command
    ) -> Message:
        types = reply if isinstance(reply, tuple) else (reply,)
        for type_ in types:
            if type_.__routing_key__ == envelope.type:
                try:
                    return self._codec.decode(body, type_)
                except DecodeError as exc:
                    raise UnexpectedReplyError(
                        type(command).__qualname__, envelope.type, types, str(exc)
                    ) from exc
        raise UnexpectedReplyError(type(command).__qualname__, envelope.type, types)

    @property
    def in_flight(self) -> int:
        """Requests waiting for their reply now."""
        return len(self._pending)


class QueueReplyChannel:
    """A reply channel on a broker without :class:`~actorbus.brokers.ReplyChannels`.

    A non-durable queue of its own (``actorbus.replies.<uuid>``). Replies are handed over as
    they arrive and acked in bulk before the next request and on close (the broker callback
    may not await), so at most ``prefetch`` replies are unacked at a time. The broker
    protocol cannot delete queues: the queue outlives the process, empty.
    """

    def __init__(self, broker: Broker, address: str) -> None:
        self._broker = broker
        self.address = address
        self._subscription: Subscription | None = None
        self._received: list[Delivery] = []

    @classmethod
    async def open(cls, broker: Broker, on_reply: ReplyCallback) -> QueueReplyChannel:
        """Declare the reply queue and consume it."""
        name = f"actorbus.replies.{uuid.uuid4().hex}"
        spec = QueueSpec(name, durable=False, dead_letter=False, retry_delays=())
        await broker.declare(Topology(queues=(spec,)))
        channel = cls(broker, name)
        received = channel._received

        def on_delivery(delivery: Delivery) -> None:
            received.append(delivery)
            on_reply(delivery.envelope, delivery.body)

        channel._subscription = await broker.consume(name, on_delivery, prefetch=1000)
        return channel

    async def publish(self, message: OutboundMessage) -> None:
        """Ack the replies received so far, then publish a request through the broker."""
        await self._ack()
        await self._broker.publish(message)

    async def _ack(self) -> None:
        received = self._received
        while received:
            await received.pop().ack()

    async def close(self) -> None:
        """Ack what was received and stop consuming the reply queue."""
        await self._ack()
        if self._subscription is not None:
            await self._subscription.cancel()
