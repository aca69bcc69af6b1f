"""The connection a service holds: :class:`MemoryBroker`, the Broker protocol on a server.

It publishes (routing synchronously through the server's cached routing tables), consumes
(subscriptions from :mod:`._delivery`), gets, purges, waits out retry delays on its clock, and
on close or an injected drop requeues what it left unsettled. The server side reaches it only
through the :class:`~._delivery.Connection` Protocol; fault injection (:mod:`._faults`) gets
the few callables it needs when the connection builds it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint

from ..._clock import Clock, SystemClock
from ..._log import get_logger
from ...exceptions import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    ExchangeNotFoundError,
    PublishNackedError,
    PublishTooLargeError,
    QueueNotFoundError,
    UnroutableError,
)
from ...messages import OutboundMessage
from .._protocol import (
    REPLY_ADDRESS_PREFIX,
    Delivery,
    DeliveryCallback,
    ReplyCallback,
    ReplyChannel,
    Subscription,
    Topology,
)
from .._url import redact, scheme_of
from ._delivery import MemoryDelivery, MemorySubscription, Owner, Queue
from ._faults import MemoryFaults
from ._queue import MemoryQueue
from ._server import server_for

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup


__all__ = ("MemoryBroker",)

_log = get_logger("actorbus.brokers", broker="memory")

#: Publishes between two yields to the event loop (see MemoryBroker.publish).
_FAIR_PUBLISHES = 32


class MemoryBroker:
    """The in-process broker with AMQP semantics; see :mod:`actorbus.brokers.memory`.

    Example::

        async with MemoryBroker() as broker:
            await broker.declare(topology)
            sub = await broker.consume("inventory.queue", on_delivery, prefetch=50)

    Args:
        url: ``memory://`` for a private server, ``memory://<name>`` to share one server with
            every other open broker of that name in this process.
        clock: Measures retry delays; the system clock by default, a manual clock in tests.
        max_message_size: Refuse bodies larger than this many bytes with
            :class:`~actorbus.exceptions.PublishTooLargeError`; ``None`` for no limit.

    Raises:
        ConfigurationError: ``url`` is not a ``memory://`` URL, or a bad option.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Clock | None = None,
        max_message_size: int | None = None,
    ) -> None:
        scheme = scheme_of(url)
        if scheme != "memory":
            raise ConfigurationError(
                f"MemoryBroker needs a 'memory://' URL, got {redact(url)!r}; "
                "use actorbus.brokers.connect(url) to pick the broker by scheme"
            )
        if max_message_size is not None and max_message_size < 1:
            raise ConfigurationError(
                f"max_message_size must be a positive number of bytes or None, "
                f"got {max_message_size!r}"
            )
        name = url.partition("://")[2].partition("?")[0].strip("/")
        self._url = redact(url)
        self._server = server_for(name)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._max_size = max_message_size
        self._open = False
        self._dropped = False
        self._unyielded = 0
        # The hot path checks only this: not open, dropped, faults armed or a size limit.
        self._guarded = True
        self._tg: TaskGroup | None = None
        self._subs: list[MemorySubscription] = []
        self._getter = Owner(self, math.inf)
        self._pending: dict[MemoryDelivery, None] = {}
        self._reply_channels: list[MemoryReplyChannel] = []
        self.faults = MemoryFaults(
            self._server,
            dropped=self._is_dropped,
            drop=self._drop,
            restore=self._restore,
            rearm=self._update_guard,
        )

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<MemoryBroker {self._url!r} {state}>"

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The broker's URL (credentials redacted; a memory URL has none)."""
        return self._url

    @property
    def clock(self) -> Clock:
        """The clock that measures retry delays."""
        return self._clock

    @property
    def is_ready(self) -> bool:
        """Entered, connection not dropped, and no subscription stopped by a failure."""
        if not self._open or self._dropped:
            return False
        return not any(sub.failed for sub in self._subs)

    @property
    def connected(self) -> bool:
        """Entered and the connection not dropped (by an injected fault): subscriptions
        receive deliveries."""
        return self._open and not self._dropped

    # ------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Connect: start the task group that runs delayed retries.

        Raises:
            BrokerError: The broker is already entered.
        """
        if self._open:
            raise BrokerError(f"broker {self._url} is already entered; enter it only once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._open = True
        self._dropped = False
        self._update_guard()
        _log.info("broker_connected", url=self._url, server=self._server.name or None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: cancel subscriptions, requeue unsettled deliveries, release delayed retries.

        Messages still waiting for a retry delay are put back at the tail of their queue at
        once, so the server keeps every message.
        """
        if not self._open:
            return
        self._open = False
        self._update_guard()
        touched: dict[Queue, None] = {}
        requeued = self._requeue_held(touched, forget=True)
        for d in self._pending:
            d.home.ready.append(d)
            touched[d.home] = None
        released = len(self._pending)
        self._pending.clear()
        for q in touched:
            q.dispatch()
        for channel in list(self._reply_channels):
            self._close_reply_channel(channel)
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            # The timers' task group only runs retry delays: the caller's exception is the
            # caller's to raise, not something to wrap into an ExceptionGroup here.
            await tg.__aexit__(None, None, None)
        _log.info("broker_closed", url=self._url, requeued=requeued, retries_released=released)

    def _requeue_held(self, touched: dict[Queue, None], *, forget: bool) -> int:
        """Detach every subscription and requeue every unsettled delivery of this connection.

        Args:
            touched: Collects the queues that got messages back.
            forget: Drop the subscriptions (close) rather than keep them for a restore.
        """
        count = 0
        owners: list[Owner] = [*self._subs, self._getter]
        for owner in owners:
            if isinstance(owner, MemorySubscription):
                owner.detach(cancel=forget)
            by_queue: dict[Queue, list[MemoryDelivery]] = {}
            for d in owner.take_unsettled():
                by_queue.setdefault(d.home, []).append(d)
            for q, held in by_queue.items():
                q.requeue_front(held)
                touched[q] = None
                count += len(held)
        if forget:
            self._subs.clear()
        return count

    def _update_guard(self) -> None:
        self._guarded = (
            not self._open
            or self._dropped
            or self.faults.pending_publish_failures > 0
            or self._max_size is not None
        )

    def _check_connected(self) -> None:
        if not self._open:
            raise BrokerConnectionError(
                self._url, "not connected; enter the broker first: 'async with broker:'"
            )
        if self._dropped:
            raise BrokerConnectionError(self._url, "connection lost (injected fault)")

    def _is_dropped(self) -> bool:
        return self._dropped

    def _drop(self) -> None:
        if self._dropped or not self._open:
            return
        self._dropped = True
        self._update_guard()
        touched: dict[Queue, None] = {}
        requeued = self._requeue_held(touched, forget=False)
        for q in touched:
            q.dispatch()
        _log.warning("broker_connection_dropped", url=self._url, requeued=requeued)

    def _restore(self) -> None:
        if not self._dropped:
            return
        self._dropped = False
        self._update_guard()
        for sub in self._subs:
            sub.reattach()
        for sub in self._subs:
            sub.home.dispatch()
        _log.info("broker_connection_restored", url=self._url)

    # ---------------------------------------------------------------- introspection

    @property
    def pending_retries(self) -> int:
        """Messages waiting out a retry delay (held by the broker, not by any consumer)."""
        return len(self._pending)

    def queue_statistics(self) -> dict[str, tuple[int, int, int]]:
        """Return ``{queue: (ready, unsettled, consumers)}`` for every queue of the server."""
        stats: dict[str, tuple[int, int, int]] = {}
        for name, q in self._server.queues.items():
            unsettled = sum(len(c.unsettled) for c in q.consumers)
            stats[name] = (len(q.ready), unsettled, len(q.consumers))
        return stats

    async def wait_for_change(self) -> None:
        """Wait until a message is queued or settled anywhere on this broker's server, or a
        retry's delay ends (its message is queued then)."""
        server = self._server
        if server.changed is None:
            server.changed = anyio.Event()
        await server.changed.wait()

    def is_idle(self) -> bool:
        """Whether nothing is left to do: no consumed queue holds a ready or unsettled message,
        and no retry is pending. Queues nobody consumes (dead-letter queues) do not count."""
        if self._pending:
            return False
        for q in self._server.queues.values():
            if q.consumers and (q.ready or any(c.unsettled for c in q.consumers)):
                return False
        return True

    def schedule(self, d: MemoryDelivery, delay: float) -> bool:
        """Put ``d`` into its queue after ``delay`` on the clock; ``False`` if closed."""
        tg = self._tg
        if tg is None:
            return False
        self._pending[d] = None
        tg.start_soon(self._put_later, d, delay)
        return True

    def forget(self, sub: MemorySubscription) -> None:
        """Stop tracking ``sub``: it was cancelled and holds no unsettled delivery."""
        if sub in self._subs:
            self._subs.remove(sub)

    async def _put_later(self, d: MemoryDelivery, delay: float) -> None:
        await self._clock.sleep(delay)
        if d in self._pending:
            del self._pending[d]
            d.home.put(d)

    # -------------------------------------------------------------------- topology

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues (each with ``<queue>.dlq``) and bindings; idempotent.

        Raises:
            TopologyError: A queue or exchange exists with other arguments (the message names
                the argument and both values), or the default exchange is declared or bound.
            ExchangeNotFoundError: A binding names an undeclared exchange.
            QueueNotFoundError: A binding names an undeclared queue.
        """
        await checkpoint()
        self._check_connected()
        self._server.declare(topology)
        _log.debug(
            "topology_declared",
            exchanges=len(topology.exchanges),
            queues=len(topology.queues),
            bindings=len(topology.bindings),
        )

    # ------------------------------------------------------------------ publishing

    async def publish(self, message: OutboundMessage) -> None:
        """Route one message to its queues; it is confirmed when this returns.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue matched.
            ExchangeNotFoundError: The exchange was not declared.
            PublishNackedError: Refused by an injected fault.
            PublishTooLargeError: The body exceeds ``max_message_size``.
            BrokerConnectionError: Not entered, or the connection was dropped.
        """
        # Routing is synchronous: like a put into a queue with room, a publish need not wait.
        # It yields to the event loop every _FAIR_PUBLISHES calls, so that a publishing loop
        # cannot starve the consumers, and otherwise lets them take a burst at once: one
        # event-loop turn per message was most of the cost of a publish → handle → ack.
        self._unyielded += 1
        if self._unyielded >= _FAIR_PUBLISHES:
            self._unyielded = 0
            await checkpoint()
        self._route(message)

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Route several messages; raise the first failure after trying every one.

        Raises:
            BrokerError: The first failure (see :meth:`publish`); the others were routed.
        """
        await checkpoint()
        first: BrokerError | None = None
        route = self._route
        for message in messages:
            try:
                route(message)
            except BrokerError as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def _route(self, message: OutboundMessage) -> None:
        if self._guarded:
            self._check_publish(message)
        exchange = message.exchange
        envelope = message.envelope
        key = envelope.routing_key
        server = self._server
        if exchange:
            router = server.routers.get(exchange)
            if router is None:
                raise ExchangeNotFoundError(exchange, key)
            targets = router.cached(key) or router.route(key)
            if targets:
                body = message.body
                for q in targets:
                    q.put(MemoryDelivery(envelope, body, exchange, q))
                return
        else:
            target = server.queues.get(key)
            if target is not None:
                target.put(MemoryDelivery(envelope, message.body, exchange, target))
                return
            if key.startswith(REPLY_ADDRESS_PREFIX):
                # A reply (at most once, as RabbitMQ's direct reply-to): routed even when
                # its requester has gone, which then never sees it.
                on_reply = server.replies.get(key)
                if on_reply is not None:
                    on_reply(envelope, message.body)
                return
        if message.mandatory:
            raise UnroutableError(exchange, key, envelope.message_id)

    def _check_publish(self, message: OutboundMessage) -> None:
        self._check_connected()
        envelope = message.envelope
        if self.faults.refuse_publish():
            self._update_guard()
            raise PublishNackedError(message.exchange, envelope.routing_key, envelope.message_id)
        limit = self._max_size
        if limit is not None and len(message.body) > limit:
            raise PublishTooLargeError(
                len(message.body),
                limit,
                f"exchange {message.exchange!r}, routing key {envelope.routing_key!r}, "
                f"message_id {envelope.message_id!r}",
            )

    # ---------------------------------------------------------------- request/reply

    async def open_reply_channel(self, on_reply: ReplyCallback) -> ReplyChannel:
        """Open a reply channel: an address on this server whose replies go to ``on_reply``.

        Like RabbitMQ's direct reply-to: no queue, no acks, at most once. The address lives
        until the channel or this connection closes.

        Raises:
            BrokerConnectionError: Not entered, or the connection was dropped.
        """
        await checkpoint()
        self._check_connected()
        address = f"{REPLY_ADDRESS_PREFIX}.{uuid.uuid4().hex}"
        self._server.replies[address] = on_reply
        channel = MemoryReplyChannel(self, address)
        self._reply_channels.append(channel)
        return channel

    def _close_reply_channel(self, channel: MemoryReplyChannel) -> None:
        self._server.replies.pop(channel.address, None)
        if channel in self._reply_channels:
            self._reply_channels.remove(channel)

    # ------------------------------------------------------------------- consuming

    def _queue(self, name: str) -> MemoryQueue:
        q = self._server.queues.get(name)
        if q is None:
            raise QueueNotFoundError(name)
        return q

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> Subscription:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries.

        Deliveries start flowing after this returns (at the next checkpoint, or at once
        for messages published afterwards).

        Raises:
            QueueNotFoundError: The queue was not declared.
            ConfigurationError: ``prefetch`` is less than 1.
            BrokerConnectionError: Not entered, or the connection was dropped.
        """
        await checkpoint()
        self._check_connected()
        if prefetch < 1:
            raise ConfigurationError(f"prefetch for queue {queue!r} must be >= 1, got {prefetch!r}")
        q = self._queue(queue)
        sub = MemorySubscription(self, q, on_delivery, prefetch)
        self._subs.append(sub)
        q.consumers.append(sub)
        if q.ready and self._tg is not None:
            self._tg.start_soon(self._kick, q)
        _log.debug("subscription_started", queue=queue, prefetch=prefetch)
        return sub

    @staticmethod
    async def _kick(q: MemoryQueue) -> None:
        q.dispatch()

    async def get(self, queue: str) -> Delivery | None:
        """Take the head of ``queue`` as a delivery to settle, or ``None`` if it is empty.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        q = self._queue(queue)
        if not q.ready:
            return None
        d = q.ready.popleft()
        self._getter.hold(d)
        return d

    async def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages (not unsettled, not waiting for a retry).

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        return len(self._queue(queue).ready)

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; return how many were deleted.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        q = self._queue(queue)
        count = len(q.ready)
        for d in q.ready:
            d.discard()
        q.ready.clear()
        _log.info("queue_purged", queue=queue, count=count)
        return count


class MemoryReplyChannel:
    """A reply address on a memory server (see :meth:`MemoryBroker.open_reply_channel`)."""

    __slots__ = ("_broker", "address")

    def __init__(self, broker: MemoryBroker, address: str) -> None:
        self._broker = broker
        self.address = address

    def __repr__(self) -> str:
        return f"<MemoryReplyChannel {self.address!r}>"

    async def publish(self, message: OutboundMessage) -> None:
        """Publish a request through the connection (see :meth:`MemoryBroker.publish`)."""
        await self._broker.publish(message)

    async def close(self) -> None:
        """Forget the address: later replies to it are dropped."""
        self._broker._close_reply_channel(self)
