"""Consuming: ``basic.consume`` with manual acks → :class:`AmqpDelivery`; batched acks.

Each subscription has a channel of its own (``basic.qos`` = its prefetch), so that a channel
error on one queue does not stop the others and ``multiple=True`` acks cover only its own
deliveries. Its deliveries are handed to the subscription's synchronous callback where
aiormq's connection reader parses them, not as a task each (see :mod:`._inline`).

Acks are batched: :meth:`AmqpDelivery.ack` records the tag, and the channel's acker task
sends one ``basic.ack(multiple=True)`` per batch for the run of settled tags at the front of
the outstanding ones (measured here: 1.5x the throughput of one ack per message; each ack
frame costs a trip through aiormq's writer). A delivery of a channel that has since
closed settles as a no-op: the broker redelivers it, and its tag means nothing on a new
channel.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import aiormq.abc
from pamqp.commands import Basic

from ..._log import get_logger
from ...messages import Envelope
from .._deadletter import (
    BROKER_DEATH_HEADERS,
    XH_ATTEMPT,
    XH_ATTEMPTS,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from .._protocol import DeliveryCallback
from ._connection import reconnect_backoff
from ._inline import InlineCallback, InlineDeliveries
from ._inline import supported as inline_supported
from ._publisher import XH_CAUSATION_ID, build_properties

if TYPE_CHECKING:
    from ._broker import AmqpBroker

__all__ = ("AmqpDelivery", "AmqpSubscription", "ChannelAcker")

_log = get_logger("actorbus.brokers.amqp")

_EMPTY: Mapping[str, Any] = {}

#: Seconds an ack may wait to be sent with others (bounded also by a quarter of the prefetch).
ACK_LINGER = 0.005
_X_DELIVERY_COUNT = "x-delivery-count"


class ChannelAcker:
    """Settles the deliveries of one channel, coalescing acks into ``multiple=True`` runs.

    An ack is recorded, not sent. The recorded acks go out when a quarter of the prefetch
    window has been acked, or :data:`ACK_LINGER` seconds after the first of them: one
    ``basic.ack(multiple=True)`` for the run of settled tags at the front of the outstanding
    ones. Acks behind a still unsettled delivery wait for it, unless they hold up a quarter
    of the window, in which case they are sent one by one.

    Args:
        channel: The channel the deliveries arrived on.
        prefetch: The channel's prefetch count (sizes the batches).
    """

    __slots__ = (
        "_acked",
        "_floor",
        "_settled",
        "_task",
        "_threshold",
        "_timer",
        "_unsettled",
        "_wake",
        "channel",
        "open",
    )

    def __init__(self, channel: aiormq.abc.AbstractChannel, prefetch: int = 1) -> None:
        self.channel = channel
        self.open = True
        self._acked: set[int] = set()  # acked locally, not sent yet
        self._settled: set[int] = set()  # above the floor, already settled at the broker
        self._floor = 0  # every tag <= floor is settled at the broker
        self._unsettled = 0
        self._threshold = max(1, prefetch // 4)
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._run(), name=f"actorbus-amqp-acker-{channel.number}"
        )

    @property
    def unsettled(self) -> int:
        """Deliveries received and not settled yet."""
        return self._unsettled

    def received(self) -> None:
        """Count a new delivery."""
        self._unsettled += 1

    def ack(self, tag: int) -> None:
        """Record an ack of ``tag``; it is sent with the next batch."""
        self._unsettled -= 1
        acked = self._acked
        acked.add(tag)
        if len(acked) >= self._threshold:
            self._wake.set()
        elif self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(ACK_LINGER, self._wake.set)

    async def reject(self, tag: int, *, requeue: bool) -> None:
        """Nack ``tag`` now (not batched: rejections are rare)."""
        self._unsettled -= 1
        try:
            await self.channel.basic_nack(tag, requeue=requeue, wait=False)
        except Exception:
            self.closed()
            return
        self._settled.add(tag)
        if self._acked and self._timer is None:
            self._arm()  # acks behind this tag may now form a run

    async def _run(self) -> None:
        wake = self._wake
        while self.open:
            await wake.wait()
            wake.clear()
            await self.flush()

    async def flush(self, *, everything: bool = False) -> None:
        """Send the recorded acks: the settled run at the front, and any stragglers if many.

        Args:
            everything: Send every recorded ack, stragglers one by one (used on close).
        """
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        acked = self._acked
        if not acked or not self.open:
            return
        settled = self._settled
        floor = self._floor
        last_ack = 0
        while True:
            nxt = floor + 1
            if nxt in acked:
                acked.discard(nxt)
                last_ack = floor = nxt
            elif nxt in settled:
                settled.discard(nxt)
                floor = nxt
            else:
                break
        self._floor = floor
        stragglers: list[int] = []
        if acked and (everything or len(acked) >= self._threshold):
            stragglers = sorted(acked)
            acked.clear()
        channel = self.channel
        try:
            if last_ack:
                # Every tag <= last_ack is settled or acked here: one frame acks them all.
                await channel.basic_ack(last_ack, multiple=True, wait=False)
            for tag in stragglers:
                await channel.basic_ack(tag, wait=False)
                settled.add(tag)
        except Exception:
            self.closed()

    def closed(self) -> None:
        """Forget everything: the channel is gone and the broker requeues what was unacked."""
        self.open = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._acked.clear()
        self._settled.clear()
        self._wake.set()

    async def aclose(self) -> None:
        """Send every recorded ack and stop the acker task."""
        if self.open:
            await self.flush(everything=True)
        self.open = False
        self._wake.set()
        await asyncio.gather(self._task, return_exceptions=True)


class AmqpDelivery:
    """One message consumed from RabbitMQ; settle it exactly once (later calls are no-ops).

    Settling after the channel it arrived on was lost does nothing: the broker has already
    requeued the message and will redeliver it.
    """

    __slots__ = ("_acker", "_broker", "_done", "_tag", "body", "envelope", "exchange", "queue")

    def __init__(
        self,
        envelope: Envelope,
        body: bytes,
        queue: str,
        exchange: str,
        tag: int,
        acker: ChannelAcker,
        broker: AmqpBroker,
    ) -> None:
        self.envelope = envelope
        self.body = body
        self.queue = queue
        self.exchange = exchange
        self._tag = tag
        self._acker = acker
        self._broker = broker
        self._done = False

    def __repr__(self) -> str:
        return f"AmqpDelivery(queue={self.queue!r}, tag={self._tag}, envelope={self.envelope!r})"

    @property
    def settled(self) -> bool:
        """Whether ack, nack, retry or dead_letter was called."""
        return self._done

    async def ack(self) -> None:
        """Confirm that the message was processed; the broker forgets it."""
        if self._done:
            return
        self._done = True
        acker = self._acker
        if acker.open:
            acker.ack(self._tag)

    async def nack(self, *, requeue: bool = True) -> None:
        """Requeue the message (it comes back redelivered), or dead-letter it at the broker.

        With ``requeue=False`` the queue's dead-letter arguments route it to ``<queue>.dlq``.
        """
        if self._done:
            return
        self._done = True
        acker = self._acker
        if acker.open:
            await acker.reject(self._tag, requeue=requeue)

    def _copy_headers(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        headers = {k: v for k, v in self.envelope.headers.items() if k not in BROKER_DEATH_HEADERS}
        if extra:
            headers.update(extra)
        return headers

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Deliver the message again after at least ``delay`` seconds, as the next attempt.

        A copy goes (confirmed) to the queue's retry queue of the matching delay tier, whose
        TTL dead-letters it back to the queue; then this delivery is acked. Without retry
        tiers the message is requeued at once.

        Raises:
            PublishError: The copy was not confirmed; this delivery stays unsettled.
        """
        if self._done:
            return
        if not self._acker.open:
            self._done = True
            return
        target = self._broker._retry_queue(self.queue, delay)
        if target is None:
            await self.nack(requeue=True)
            return
        envelope = self.envelope
        copy = self._copy_headers(headers)
        copy[XH_ATTEMPT] = envelope.attempt + 1
        copy[XH_ORIGINAL_EXCHANGE] = self.exchange
        copy[XH_ORIGINAL_ROUTING_KEY] = envelope.routing_key
        await self._broker._publisher.publish_raw(
            "", target, self.body, build_properties(envelope, copy), mandatory=True
        )
        await self.ack()

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to ``<queue>.dlq`` with ``headers`` added, then ack it.

        The copy keeps body and properties and records the original exchange, routing key
        and queue. It is confirmed before the ack, so a crash in between duplicates rather
        than loses it. A queue declared with ``dead_letter=False`` discards the message
        (logged as ``message_discarded``), as the memory broker does.

        Raises:
            PublishError: The copy was not confirmed; this delivery stays unsettled.
        """
        if self._done:
            return
        if not self._acker.open:
            self._done = True
            return
        envelope = self.envelope
        if not self._broker._dead_letters(self.queue):
            _log.warning(
                "message_discarded", queue=self.queue, message_id=envelope.message_id,
                reason=headers.get(XH_REASON),
                detail="the queue has no dead-letter queue (dead_letter=False)",
            )  # fmt: skip
            await self.ack()
            return
        copy = self._copy_headers(headers)
        copy[XH_ORIGINAL_EXCHANGE] = self.exchange
        copy[XH_ORIGINAL_ROUTING_KEY] = envelope.routing_key
        copy[XH_ORIGINAL_QUEUE] = self.queue
        copy.setdefault(XH_ATTEMPTS, envelope.attempt)
        await self._broker._publisher.publish_raw(
            "", f"{self.queue}.dlq", self.body, build_properties(envelope, copy), mandatory=True
        )
        await self.ack()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("amqp_delivery_task_failed", exc_info=exc)


def _as_int(value: Any) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def make_delivery(
    frame: Basic.Deliver | Basic.GetOk,
    props: Basic.Properties,
    body: bytes,
    queue: str,
    acker: ChannelAcker,
    broker: AmqpBroker,
) -> AmqpDelivery:
    """Build the delivery of a ``basic.deliver`` or ``basic.get-ok`` frame."""
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
    acker.received()
    return AmqpDelivery(envelope, body, queue, exchange, frame.delivery_tag, acker, broker)  # type: ignore[arg-type]


class AmqpSubscription:
    """A consumer on one queue that survives reconnections and server-sent cancels.

    ``active`` is false while the connection is down, after the broker cancelled the
    consumer (queue deleted, quorum leader moved), and after :meth:`cancel`. Until
    cancelled, the subscription re-consumes as soon as it can.
    """

    def __init__(
        self,
        broker: AmqpBroker,
        queue: str,
        on_delivery: DeliveryCallback,
        prefetch: int,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._acker: ChannelAcker | None = None
        # Hands the deliveries of the acker's channel over without a task each (None where
        # the installed aiormq does not allow it: see _inline.py).
        self._inline: InlineDeliveries | None = None
        self._consumer_tag: str | None = None
        self._active = False
        self._cancelled = False
        # Single active consumer: after cancel(), deliveries are held unsettled until close().
        self._holding = False
        self._recovery: asyncio.Task[None] | None = None
        self._max_size = broker._max_message_size

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
        inline = InlineDeliveries(channel) if inline_supported(channel) else None
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
        broker = self._broker
        callback = self._on_delivery
        channel = acker.channel
        # Dead-letter oversized bodies only where a dead-letter queue is known to exist;
        # elsewhere (a DLQ itself, a queue declared by someone else) hand them on.
        max_size = self._max_size if broker._has_dlq(queue) else 0

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
                delivery = make_delivery(frame, props, body, queue, acker, broker)
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
            XH_REASON: "message-too-large",
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
        if not self._cancelled and not self._broker._closing:
            self._schedule_recovery()

    def lost(self) -> None:
        """Mark the subscription inactive: its connection is gone."""
        self._active = False
        acker = self._acker
        if acker is not None:
            acker.closed()
        if not self._cancelled and not self._broker._closing:
            self._schedule_recovery()

    def _schedule_recovery(self) -> None:
        if self._recovery is not None and not self._recovery.done():
            return
        self._recovery = asyncio.get_running_loop().create_task(
            self._recover(), name=f"actorbus-amqp-resume-{self._queue}"
        )

    async def _recover(self) -> None:
        broker = self._broker
        manager = broker._manager
        if manager is None:  # pragma: no cover - subscriptions exist only while entered
            return
        next_delay = reconnect_backoff(
            broker._reconnect_delay, broker._reconnect_max_delay
        ).delays()
        while not self._cancelled and not broker._closing:
            connection = manager.connection
            if connection is None or not manager.ready.is_set():
                await manager.ready.wait()
                continue
            try:
                await broker._redeclare_queue(self._queue)
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
        recovery = self._recovery
        if recovery is not None and not recovery.done():
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)
        spec = self._broker._queue_specs.get(self._queue)
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
