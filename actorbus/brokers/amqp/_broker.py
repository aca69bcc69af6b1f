"""AmqpBroker: the :class:`~actorbus.brokers.Broker` on RabbitMQ, through aiormq."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import aiormq.abc
from pamqp.commands import Basic, Queue

from ..._log import get_logger
from ...exceptions import BrokerConnectionError, ConfigurationError
from .._protocol import DeliveryCallback, OutboundMessage, QueueSpec, ReplyCallback, Topology
from ._acker import ChannelAcker
from ._connection import ConnectionManager, make_ssl_context, parse_amqp_url, reconnect_backoff
from ._consumer import AmqpSubscription, Recovery
from ._delivery import AmqpDelivery, QueueRoutes, make_delivery
from ._errors import translate
from ._publisher import Publisher
from ._replies import AmqpReplyChannel
from ._topology import declare_binding, declare_queue, declare_topology

if TYPE_CHECKING:
    from typing import Self

__all__ = ("AmqpBroker",)

_log = get_logger("actorbus.brokers.amqp")

#: RabbitMQ's own default ``max_message_size`` (128 MiB).
DEFAULT_MAX_MESSAGE_SIZE = 128 * 1024 * 1024


class AmqpBroker:
    """A :class:`~actorbus.brokers.Broker` on RabbitMQ (AMQP 0-9-1), through aiormq.

    Runs on asyncio only. Publishes persistently with publisher confirms, consumes with
    manual (batched) acks, reconnects with backoff and then redeclares its topology and
    resumes every subscription.

    URL: ``amqp://user:password@host:5672/vhost`` or ``amqps://…``. Several addresses,
    tried in order, may be given as ``amqp://user:pw@h1:5672,h2:5673/vhost`` or as a list
    of URLs. Query options: ``heartbeat`` (seconds), ``connect_timeout`` (seconds),
    ``cafile``, ``certfile``, ``keyfile`` (TLS), ``verify=0`` (no server verification: for
    tests only), ``name`` (the connection name), ``inline=0`` (consume through aiormq's own
    path instead of :mod:`._inline`; also ``ACTORBUS_AMQP_INLINE=0``). Constructor arguments
    win over the URL.

    Args:
        url: The broker URL (or a list of them for failover).
        heartbeat: Heartbeat interval in seconds (a dead peer is noticed after about 3x).
        connect_timeout: Seconds allowed for one connection attempt.
        reconnect_delay: First delay of the reconnection backoff, in seconds.
        reconnect_max_delay: Longest delay of the reconnection backoff, in seconds.
        reconnect_timeout: How long a publish (or another operation) waits for a lost
            connection to come back before raising :class:`BrokerConnectionError`.
        confirm_window: Publishes awaiting their confirm at once, at most.
        max_message_size: Larger bodies are refused on publish
            (:class:`~actorbus.exceptions.PublishTooLargeError`) and, when consumed from a
            queue this broker declared with a dead-letter queue, dead-lettered at once without
            reaching the consumer (``x-actorbus-reason: message-too-large``). ``0``: no limit.
        ssl_context: The TLS context for ``amqps://`` (overrides the file options).
        cafile: CA bundle that verifies the server (``amqps://``).
        certfile: Client certificate for mutual TLS.
        keyfile: Key of the client certificate.
        verify: Verify the server's certificate and host name (default true).
        client_name: The connection name shown in RabbitMQ's tools.
        shutdown_timeout: Seconds that leaving the context waits for in-flight confirms.

    Raises:
        ConfigurationError: The URL or an option is invalid.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        heartbeat: int | None = None,
        connect_timeout: float | None = None,
        reconnect_delay: float = 0.2,
        reconnect_max_delay: float = 10.0,
        reconnect_timeout: float = 30.0,
        confirm_window: int = 1000,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        verify: bool | None = None,
        client_name: str | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        endpoints, options, shown = parse_amqp_url(url)
        self._endpoints = endpoints
        self._url = shown
        self._heartbeat = heartbeat if heartbeat is not None else (options.heartbeat or 10)
        self._connect_timeout = connect_timeout or options.connect_timeout or 10.0
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._reconnect_timeout = reconnect_timeout
        self._confirm_window = confirm_window
        if max_message_size < 0:
            raise ConfigurationError(
                f"max_message_size must be >= 0 (0: no limit), got {max_message_size!r}"
            )
        self._max_message_size = max_message_size
        self._client_name = client_name or options.name or "actorbus"
        self._shutdown_timeout = shutdown_timeout
        self._ssl_context = ssl_context
        self._tls_files = (
            cafile or options.cafile,
            certfile or options.certfile,
            keyfile or options.keyfile,
            options.verify if verify is None else verify,
        )
        self._inline = options.inline
        self._topology = Topology()
        self._queue_specs: dict[str, QueueSpec] = {}
        # Per queue: its retry tiers, its DLQ and the publish, handed to deliveries.
        self._routes: dict[str, QueueRoutes] = {}
        self._subs: list[AmqpSubscription] = []
        self._reply_channels: list[AmqpReplyChannel] = []
        self._manager: ConnectionManager | None = None
        self._recovery: Recovery | None = None
        self._publisher: Publisher = None  # type: ignore[assignment]  # set in __aenter__
        self._admin: aiormq.abc.AbstractChannel | None = None
        self._admin_lock = asyncio.Lock()
        self._getter_lock = asyncio.Lock()
        self._getter: ChannelAcker | None = None
        self._closing = False
        self._entered = False

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The broker's URL with credentials redacted; safe to log."""
        return self._url

    @property
    def is_ready(self) -> bool:
        """Connected, and every subscription actually consuming."""
        manager = self._manager
        if manager is None or not manager.ready.is_set() or self._closing:
            return False
        return all(sub.active for sub in self._subs if not sub.cancelled)

    def __repr__(self) -> str:
        return f"AmqpBroker({self._url!r}, ready={self.is_ready})"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "AmqpBroker runs on asyncio only (aiormq is asyncio-only), but no asyncio "
                "event loop is running; run with anyio's 'asyncio' backend "
                "(anyio.run(main, backend='asyncio'))"
            ) from None
        if self._entered:
            raise RuntimeError(f"{self!r} is already entered; create a new broker instead")
        self._entered = True
        context = self._ssl_context
        if context is None and any(e.url.scheme == "amqps" for e in self._endpoints):
            cafile, certfile, keyfile, verify = self._tls_files
            context = make_ssl_context(cafile, certfile, keyfile, verify=verify)
        self._manager = ConnectionManager(
            self._endpoints,
            self._url,
            heartbeat=self._heartbeat,
            connect_timeout=self._connect_timeout,
            ssl_context=context,
            reconnect_delay=self._reconnect_delay,
            reconnect_max_delay=self._reconnect_max_delay,
            client_name=self._client_name,
            on_connected=self._on_connected,
            on_lost=self._on_lost,
        )
        self._publisher = Publisher(
            self._manager,
            confirm_window=self._confirm_window,
            reconnect_timeout=self._reconnect_timeout,
            max_message_size=self._max_message_size,
        )
        self._recovery = Recovery(
            manager=self._manager,
            redeclare=self._redeclare_queue,
            closing=self._is_closing,
            backoff=reconnect_backoff(self._reconnect_delay, self._reconnect_max_delay),
        )
        await self._manager.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel consumers, wait for in-flight confirms, requeue unsettled deliveries, close.

        Called when leaving the ``async with`` block.
        """
        if self._closing or self._manager is None:
            return
        self._closing = True
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.cancel()
        await self._publisher.drain(self._shutdown_timeout)
        for sub in subs:
            await sub.close()
        channels, self._reply_channels = self._reply_channels, []
        for channel in channels:
            await channel.close()
        getter, self._getter = self._getter, None
        if getter is not None:
            await getter.aclose()
        self._publisher.lost()
        self._admin = None
        await self._manager.close()

    async def _on_connected(self, connection: aiormq.abc.AbstractConnection) -> None:
        await self._publisher.open(connection)
        self._admin = await connection.channel(publisher_confirms=False)
        if self._topology.exchanges or self._topology.queues or self._topology.bindings:
            await declare_topology(self._admin, self._topology, self._url)

    def _is_closing(self) -> bool:
        return self._closing

    def _on_lost(self) -> None:
        self._publisher.lost()
        for channel in self._reply_channels:
            channel.lost()
        self._admin = None
        getter, self._getter = self._getter, None
        if getter is not None:
            getter.closed()
        for sub in self._subs:
            sub.lost()

    # ------------------------------------------------------------------ channels

    def _require_open(self) -> ConnectionManager:
        manager = self._manager
        if manager is None or self._closing:
            raise BrokerConnectionError(
                self._url, "the broker is not open; use it as 'async with broker:'"
            )
        return manager

    async def _admin_channel(self) -> aiormq.abc.AbstractChannel:
        """Return the channel for declarations and queue inspection, reopening it if needed.

        A failed declaration closes its channel (AMQP semantics), so this channel is never
        the publishing one.
        """
        channel = self._admin
        if channel is not None and not channel.is_closed:
            return channel
        connection = await self._require_open().wait_ready(self._reconnect_timeout)
        try:
            channel = await connection.channel(publisher_confirms=False)
        except Exception as exc:
            raise translate(exc, url=self._url) from exc
        self._admin = channel
        return channel

    # ------------------------------------------------------------------ topology

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues (with dead-letter and retry queues) and bindings.

        Declaring the same topology twice is harmless. The topology is redeclared after
        every reconnection.

        Raises:
            TopologyError: A declaration clashes with what exists on the broker; the message
                names the queue, the argument and both values.
        """
        self._require_open()
        async with self._admin_lock:
            channel = await self._admin_channel()
            await declare_topology(channel, topology, self._url)
            self._topology = self._topology.merge(topology)
            for spec in topology.queues:
                self._queue_specs[spec.name] = spec
                routes = self._routes.get(spec.name)
                if routes is not None:
                    routes.declared(spec)
        _log.debug(
            "amqp_topology_declared", exchanges=len(topology.exchanges),
            queues=len(topology.queues), bindings=len(topology.bindings),
        )  # fmt: skip

    async def _redeclare_queue(self, queue: str) -> None:
        """Declare ``queue`` (if this broker declared it before) and its bindings again."""
        spec = self._queue_specs.get(queue)
        if spec is None:
            return
        async with self._admin_lock:
            channel = await self._admin_channel()
            await declare_queue(channel, spec, self._url)
            for binding in self._topology.bindings:
                if binding.queue == queue:
                    await declare_binding(channel, binding, self._url)

    def _routes_of(self, queue: str) -> QueueRoutes:
        """The routes of ``queue``'s deliveries (one value per queue, updated on declare)."""
        routes = self._routes.get(queue)
        if routes is None:
            routes = QueueRoutes(queue, self._publisher.publish_raw, self._queue_specs.get(queue))
            self._routes[queue] = routes
        return routes

    async def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages in ``queue``.

        Raises:
            QueueNotFoundError: The queue does not exist.
        """
        ok = await self._passive(queue)
        return int(ok.message_count or 0)

    async def consumer_count(self, queue: str) -> int:
        """Return the number of consumers on ``queue`` (an AMQP extra, used by tests).

        Raises:
            QueueNotFoundError: The queue does not exist.
        """
        ok = await self._passive(queue)
        return int(ok.consumer_count or 0)

    async def _passive(self, queue: str) -> Queue.DeclareOk:
        self._require_open()
        async with self._admin_lock:
            channel = await self._admin_channel()
            try:
                return await channel.queue_declare(queue, passive=True)
            except Exception as exc:
                raise translate(exc, url=self._url, queue=queue) from exc

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; return how many were deleted.

        Raises:
            QueueNotFoundError: The queue does not exist.
        """
        self._require_open()
        async with self._admin_lock:
            channel = await self._admin_channel()
            try:
                ok = await channel.queue_purge(queue)
            except Exception as exc:
                raise translate(exc, url=self._url, queue=queue) from exc
        return int(ok.message_count or 0)

    # ------------------------------------------------------------------ publishing

    async def publish(self, message: OutboundMessage) -> None:
        """Publish one message persistently and wait until the broker confirmed it.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue received it.
            PublishNackedError: The broker refused it.
            BrokerConnectionError: The connection was lost before the confirm arrived.
        """
        if self._closing or self._manager is None:
            self._require_open()
        await self._publisher.publish(message)

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish several messages pipelined and wait until all are confirmed.

        Raises:
            PublishError: At least one was not confirmed; the first failure is raised after
                every message was either confirmed or failed.
        """
        if self._closing or self._manager is None:
            self._require_open()
        await self._publisher.publish_batch(messages)

    # ------------------------------------------------------------------ request/reply

    async def open_reply_channel(self, on_reply: ReplyCallback) -> AmqpReplyChannel:
        """Open a direct reply-to channel: requests published on it get their replies back.

        See :mod:`._replies`: no queue is declared; replies are at most once.

        Raises:
            BrokerConnectionError: The broker is not open or not reachable.
        """
        manager = self._require_open()
        channel = AmqpReplyChannel(
            manager,
            on_reply,
            reconnect_timeout=self._reconnect_timeout,
            max_message_size=self._max_message_size,
        )
        await channel.open()
        self._reply_channels.append(channel)
        return channel

    # ------------------------------------------------------------------ consuming

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> AmqpSubscription:
        """Start consuming ``queue``: at most ``prefetch`` unsettled deliveries at a time.

        ``on_delivery`` is called synchronously for every delivery, on the event loop.

        Raises:
            QueueNotFoundError: The queue was not declared.
            ConfigurationError: ``prefetch`` is not positive.
        """
        if prefetch < 1:
            raise ConfigurationError(
                f"prefetch must be >= 1, got {prefetch!r}; it bounds unsettled deliveries"
            )
        connection = await self._require_open().wait_ready(self._reconnect_timeout)
        recovery = self._recovery
        if recovery is None:  # pragma: no cover - set with the manager
            raise BrokerConnectionError(self._url, "the broker is not open")
        sub = AmqpSubscription(
            self._routes_of(queue), on_delivery, prefetch, recovery,
            max_message_size=self._max_message_size, inline=self._inline,
        )  # fmt: skip
        try:
            await sub.start(connection)
        except Exception as exc:
            raise translate(exc, url=self._url, queue=queue) from exc
        self._subs.append(sub)
        _log.debug("amqp_consumer_started", queue=queue, prefetch=prefetch)
        return sub

    async def get(self, queue: str) -> AmqpDelivery | None:
        """Take one message from ``queue`` without a subscription, or ``None`` if empty.

        Unlike :meth:`consume`, no size limit applies: this is how dead-letter queues are
        inspected.

        Raises:
            QueueNotFoundError: The queue does not exist.
        """
        connection = await self._require_open().wait_ready(self._reconnect_timeout)
        try:
            async with self._getter_lock:
                getter = self._getter
                if getter is None or not getter.open or getter.channel.is_closed:
                    channel = await connection.channel(publisher_confirms=False)
                    if getter is not None:
                        getter.closed()
                    self._getter = getter = ChannelAcker(channel)
            message = await getter.channel.basic_get(queue)
        except Exception as exc:
            raise translate(exc, url=self._url, queue=queue) from exc
        if not isinstance(message.delivery, Basic.GetOk):
            return None
        return make_delivery(
            message.delivery, message.header.properties, message.body, self._routes_of(queue),
            getter,
        )  # fmt: skip
