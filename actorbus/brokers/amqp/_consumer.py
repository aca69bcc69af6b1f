"""Consuming one queue: :class:`AmqpSubscription`, a consumer that survives losses.

Each subscription has a channel of its own (``basic.qos`` = its prefetch), so that a channel
error on one queue does not stop the others and ``multiple=True`` acks cover only its own
deliveries (see :mod:`._acker`). Its deliveries are handed to the subscription's synchronous
callback where aiormq's connection reader parses them, not as a task each (see
:mod:`._inline`); where that path is switched off (``ACTORBUS_AMQP_INLINE=0``, ``?inline=0``)
or the installed aiormq does not allow it, aiormq's own consumer path is taken.

When the connection is lost, the channel closes, or the broker cancels the consumer (queue
deleted, quorum leader moved), the subscription consumes again as soon as it can. What it
needs of its broker for that is one narrow :class:`Recovery` value, never the broker itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiormq.abc
from pamqp.commands import Basic

from ..._backoff import Backoff
from ..._log import get_logger
from .._deadletter import REASON_MESSAGE_TOO_LARGE, XH_ERROR_MESSAGE, XH_ERROR_TYPE, XH_REASON
from .._protocol import DeliveryCallback
from ._acker import ChannelAcker
from ._connection import ConnectionManager
from ._delivery import AmqpDelivery, QueueRoutes, make_delivery
from ._inline import InlineCallback, InlineDeliveries
from ._inline import supported as inline_supported

__all__ = ("AmqpSubscription", "Recovery")

_log = get_logger("actorbus.brokers.amqp")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What a subscription needs of its broker to consume again after a loss.

    Attributes:
        manager: The connection manager: its ``ready`` event and current ``connection``.
        redeclare: Declares a queue again (with its bindings) if the broker declared it.
        closing: Whether the broker is closing (then nothing is resumed).
        backoff: The schedule of retries when consuming again fails.
    """

    manager: ConnectionManager
    redeclare: Callable[[str], Awaitable[None]]
    closing: Callable[[], bool]
    backoff: Backoff


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("amqp_delivery_task_failed", exc_info=exc)


class AmqpSubscription:
    """A consumer on one queue that survives reconnections and server-sent cancels.

    ``active`` is false while the connection is down, after the broker cancelled the
    consumer (queue deleted, quorum leader moved), and after :meth:`cancel`. Until
    cancelled, the subscription re-consumes as soon as it can.
    """

    def __init__(
        self,
        routes: QueueRoutes,
        on_delivery: DeliveryCallback,
        prefetch: int,
        recovery: Recovery,
        *,
        max_message_size: int = 0,
        inline: bool = True,
    ) -> None:
        self._routes = routes
        self._queue = routes.queue
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._recovery = recovery
        self._max_size = max_message_size
        self._use_inline = inline
        self._acker: ChannelAcker | None = None
        # Hands the deliveries of the acker's channel over without a task each (None where
        # switched off or the installed aiormq does not allow it: see _inline.py).
        self._inline: InlineDeliveries | None = None
        self._consumer_tag: str | None = None
        self._active = False
        self._cancelled = False
        # Single active consumer: after cancel(), deliveries are held unsettled until close().
        self._holding = False
        self._resuming: asyncio.Task[None] | None = None

    @property
    def queue(self) -> str:
        """The queue consumed from."""
        return self._queue

    @property
    def active(self) -> bool:
        """Whether deliveries are flowing (false while reconnecting or after a cancel)."""
        return self._active

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def __repr__(self) -> str:
        return f"AmqpSubscription(queue={self._queue!r}, active={self._active})"

    async def start(self, connection: aiormq.abc.AbstractConnection) -> None:
        """Open a channel on ``connection``, set the prefetch and start consuming.

        Raises:
            QueueNotFoundError: The queue does not exist.
            BrokerConnectionError: The connection failed meanwhile.
        """
        channel = await connection.channel(publisher_confirms=False)
        acker = ChannelAcker(channel, self._prefetch)
        inline = None
        if self._use_inline:
            if inline_supported(channel):
                inline = InlineDeliveries(channel)
            else:
                _log.debug("amqp_inline_unavailable", queue=self._queue, channel=channel.number)
        try:
            await channel.basic_qos(prefetch_count=self._prefetch)
            channel.on_consumer_cancel_callbacks.add(self._on_server_cancel)
            consumer_tag = await self._consume_on(acker, inline)
        except BaseException:
            acker.closed()
            await asyncio.shield(channel.close())
            raise
        old = self._acker
        if old is not None:
            old.closed()
        self._acker = acker
        self._inline = inline
        self._consumer_tag = consumer_tag
        self._active = True
        channel.closing.add_done_callback(lambda _: self._on_channel_closed(acker))

    async def _consume_on(self, acker: ChannelAcker, inline: InlineDeliveries | None) -> str:
        """Send ``basic.consume`` on the acker's channel; return the consumer tag."""
        channel = acker.channel
        deliver = self._consumer(acker)
        # The tag is ours, so that the inline path knows it before the first delivery.
        consumer_tag = f"ctag{channel.number}.{uuid.uuid4().hex}"
        if inline is not None:
            inline.callbacks.clear()  # one consumer per channel: earlier tags were cancelled
            inline.callbacks[consumer_tag] = deliver

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            # aiormq's own path (a task per delivery): where the inline path is unavailable.
            deliver(message.delivery, message.header.properties, message.body)  # type: ignore[arg-type]

        try:
            ok = await channel.basic_consume(self._queue, on_message, consumer_tag=consumer_tag)
        except BaseException:
            if inline is not None:
                inline.callbacks.pop(consumer_tag, None)
            raise
        return ok.consumer_tag or consumer_tag

    def _consumer(self, acker: ChannelAcker) -> InlineCallback:
        """The synchronous callback of the deliveries on the acker's channel."""
        queue = self._queue
        routes = self._routes
        callback = self._on_delivery
        channel = acker.channel
        # Dead-letter oversized bodies only where a dead-letter queue is known to exist;
        # elsewhere (a DLQ itself, a queue declared by someone else) hand them on.
        max_size = self._max_size if routes.has_dlq else 0

        def background(coro: Coroutine[Any, Any, None]) -> None:
            # The rare paths that talk to the broker: a task of the channel, as aiormq runs
            # consumer callbacks, so that it ends with the channel.
            channel.create_task(coro).add_done_callback(_log_failure)

        def deliver(frame: Basic.Deliver, props: Basic.Properties, body: bytes) -> None:
            if self._holding or not acker.open:
                # Left unsettled: close() returns it to the head of the queue (single active
                # consumer hand-over), or the channel is gone and the broker requeues it.
                return
            try:
                delivery = make_delivery(frame, props, body, routes, acker)
            except Exception:
                # Never leave it unsettled (it would hold a prefetch slot until the channel
                # closes): dead-letter it through the queue's DLX.
                _log.exception("amqp_delivery_unreadable", queue=queue)
                acker.received()
                background(acker.reject(frame.delivery_tag, requeue=False))  # type: ignore[arg-type]
                return
            if max_size and len(body) > max_size:
                background(self._too_large(delivery, max_size))
                return
            try:
                callback(delivery)
            except Exception:
                _log.exception("delivery_callback_failed", queue=queue)
                background(delivery.nack(requeue=True))

        return deliver

    async def _too_large(self, delivery: AmqpDelivery, limit: int) -> None:
        size = len(delivery.body)
        _log.warning(
            "message_too_large_dead_lettered", queue=self._queue,
            message_id=delivery.envelope.message_id, size=size, limit=limit,
        )  # fmt: skip
        headers = {
            XH_REASON: REASON_MESSAGE_TOO_LARGE,
            XH_ERROR_TYPE: "MessageTooLargeError",
            XH_ERROR_MESSAGE: f"message of {size} bytes exceeds the limit of {limit} bytes",
        }
        try:
            await delivery.dead_letter(headers)
        except Exception:
            _log.exception("dead_letter_failed", queue=self._queue)
            await delivery.nack(requeue=False)

    def _on_server_cancel(self, frame: Basic.Cancel) -> None:
        if frame.consumer_tag != self._consumer_tag or self._cancelled:
            return
        self._active = False
        _log.warning("amqp_consumer_cancelled_by_broker", queue=self._queue)
        self._schedule_recovery()

    def _on_channel_closed(self, acker: ChannelAcker) -> None:
        acker.closed()
        if acker is not self._acker:
            return
        self._active = False
        if not self._cancelled and not self._recovery.closing():
            self._schedule_recovery()

    def lost(self) -> None:
        """Mark the subscription inactive: its connection is gone."""
        self._active = False
        acker = self._acker
        if acker is not None:
            acker.closed()
        if not self._cancelled and not self._recovery.closing():
            self._schedule_recovery()

    def _schedule_recovery(self) -> None:
        if self._resuming is not None and not self._resuming.done():
            return
        self._resuming = asyncio.get_running_loop().create_task(
            self._recover(), name=f"actorbus-amqp-resume-{self._queue}"
        )

    async def _recover(self) -> None:
        recovery = self._recovery
        manager = recovery.manager
        next_delay = recovery.backoff.delays()
        while not self._cancelled and not recovery.closing():
            connection = manager.connection
            if connection is None or not manager.ready.is_set():
                await manager.ready.wait()
                continue
            try:
                await recovery.redeclare(self._queue)
                old = self._acker
                if old is not None and old.open and not old.channel.is_closed:
                    # A server-sent cancel leaves the channel open: consume on it again.
                    self._consumer_tag = await self._consume_on(old, self._inline)
                    self._active = True
                else:
                    await self.start(connection)
            except Exception as exc:
                delay = next_delay()
                _log.info(
                    "amqp_consumer_resume_failed", queue=self._queue,
                    retry_in=round(delay, 2), reason=repr(exc),
                )  # fmt: skip
                await asyncio.sleep(delay)
                continue
            _log.info("amqp_consumer_resumed", queue=self._queue)
            return

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries in flight may still be settled."""
        if self._cancelled:
            return
        self._cancelled = True
        self._active = False
        resuming = self._resuming
        if resuming is not None and not resuming.done():
            resuming.cancel()
            await asyncio.gather(resuming, return_exceptions=True)
        spec = self._routes.spec
        if spec is not None and spec.single_active_consumer:
            # basic.cancel would hand the queue to the standby at once while this consumer
            # still holds deliveries (a quorum queue returns them only when the channel
            # closes), and they would come back behind newer ones. Stay registered and hand
            # nothing more to the app; close() requeues the rest at the head, and only then
            # does the broker activate the standby: the order survives the handover.
            self._holding = True
            return
        acker = self._acker
        if acker is not None and acker.open and self._consumer_tag is not None:
            try:
                await acker.channel.basic_cancel(self._consumer_tag)
            except Exception:
                acker.closed()

    async def close(self) -> None:
        """Cancel, flush pending acks and close the channel (unacked messages are requeued)."""
        await self.cancel()
        acker = self._acker
        if acker is not None:
            await acker.aclose()
            if not acker.channel.is_closed:
                await asyncio.shield(acker.channel.close())
