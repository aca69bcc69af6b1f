"""Settling one consumed message: :class:`AmqpDelivery`, and :class:`QueueRoutes`.

A delivery is settled exactly once: acked (batched by its channel's
:class:`~._acker.ChannelAcker`), nacked, retried through the queue's retry tier, or copied to
the queue's dead-letter queue. What it needs of the broker for that is one narrow per-queue
value, :class:`QueueRoutes`: the queue's retry tiers, whether it has a dead-letter queue, and
the confirmed publish that sends the copies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from pamqp.commands import Basic

from ..._log import get_logger
from ...messages import Envelope
from .._deadletter import (
    BROKER_DEATH_HEADERS,
    XH_ATTEMPT,
    XH_ATTEMPTS,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from .._protocol import QueueSpec
from ._acker import ChannelAcker
from ._mapping import build_properties, read_envelope
from ._topology import pick_retry_queue, retry_tiers_ms

__all__ = ("AmqpDelivery", "PublishRaw", "QueueRoutes", "make_delivery")

_log = get_logger("actorbus.brokers.amqp")


class PublishRaw(Protocol):
    """Publish with a confirm (:meth:`~._publisher.Publisher.publish_raw`)."""

    def __call__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        *,
        mandatory: bool,
    ) -> Awaitable[None]: ...


class QueueRoutes:
    """Where the settled messages of one queue go, as far as this broker knows the queue.

    One per queue consumed from or read with ``get``, shared by its deliveries and its
    subscription. :meth:`declared` updates it in place when the broker (re)declares the
    queue, so that deliveries already handed out see the same routes as new ones.

    Args:
        queue: The queue's name.
        publish: Publishes a copy (a retry or a dead letter) and waits for its confirm.
        spec: The queue as this broker declared it, if it did.
    """

    __slots__ = ("_tiers", "dlq", "publish", "queue", "spec")

    def __init__(self, queue: str, publish: PublishRaw, spec: QueueSpec | None = None) -> None:
        self.queue = queue
        self.publish = publish
        self.dlq = f"{queue}.dlq"
        self.spec: QueueSpec | None = None
        self._tiers: tuple[int, ...] = ()
        if spec is not None:
            self.declared(spec)

    def __repr__(self) -> str:
        return f"QueueRoutes({self.queue!r}, tiers_ms={self._tiers}, has_dlq={self.has_dlq})"

    def declared(self, spec: QueueSpec) -> None:
        """Take the queue's spec as the broker has just declared it."""
        self.spec = spec
        self._tiers = retry_tiers_ms(spec)

    @property
    def has_dlq(self) -> bool:
        """Whether this broker declared the queue with a dead-letter queue."""
        spec = self.spec
        return spec is not None and spec.dead_letter

    @property
    def dead_letters(self) -> bool:
        """Whether dead letters are copied to :attr:`dlq` (else discarded).

        True unless this broker declared the queue with ``dead_letter=False``; for a queue
        declared elsewhere, the copy is tried (and fails as unroutable without a DLQ).
        """
        spec = self.spec
        return spec is None or spec.dead_letter

    def retry_queue(self, delay: float) -> str | None:
        """The retry queue of the tier for ``delay`` seconds; ``None`` without retry tiers."""
        tiers = self._tiers
        if not tiers:
            return None
        return pick_retry_queue(self.queue, tiers, delay)


class AmqpDelivery:
    """One message consumed from RabbitMQ; settle it exactly once (later calls are no-ops).

    Settling after the channel it arrived on was lost does nothing: the broker has already
    requeued the message and will redeliver it.
    """

    __slots__ = ("_acker", "_done", "_routes", "_tag", "body", "envelope", "exchange", "queue")

    def __init__(
        self,
        envelope: Envelope,
        body: bytes,
        routes: QueueRoutes,
        exchange: str,
        tag: int,
        acker: ChannelAcker,
    ) -> None:
        self.envelope = envelope
        self.body = body
        self.queue = routes.queue
        self.exchange = exchange
        self._tag = tag
        self._acker = acker
        self._routes = routes
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
        routes = self._routes
        target = routes.retry_queue(delay)
        if target is None:
            await self.nack(requeue=True)
            return
        envelope = self.envelope
        copy = self._copy_headers(headers)
        copy[XH_ATTEMPT] = envelope.attempt + 1
        copy[XH_ORIGINAL_EXCHANGE] = self.exchange
        copy[XH_ORIGINAL_ROUTING_KEY] = envelope.routing_key
        await routes.publish(
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
        routes = self._routes
        if not routes.dead_letters:
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
        await routes.publish(
            "", routes.dlq, self.body, build_properties(envelope, copy), mandatory=True
        )
        await self.ack()


def make_delivery(
    frame: Basic.Deliver | Basic.GetOk,
    props: Basic.Properties,
    body: bytes,
    routes: QueueRoutes,
    acker: ChannelAcker,
) -> AmqpDelivery:
    """Build the delivery of a ``basic.deliver`` or ``basic.get-ok`` frame; count it received."""
    envelope, exchange = read_envelope(frame, props)
    acker.received()
    return AmqpDelivery(envelope, body, routes, exchange, frame.delivery_tag, acker)  # type: ignore[arg-type]
