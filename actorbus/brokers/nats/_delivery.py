"""One JetStream message handed to a consumer, and its settlement.

- ``ack`` acknowledges (``+ACK``); a delivery taken with ``get`` waits for the server's
  confirmation of the ack (``ack_sync``), so ``queue_depth`` right after it is exact.
- ``nack(requeue=True)`` is a ``-NAK``: the server redelivers at once, ``redelivered`` set.
- ``retry(delay, headers)`` publishes a copy with the new headers and the next attempt to
  ``actorbus.retry.<queue>`` (awaiting its JetStream ack), then acks the original. The
  copy carries ``Actorbus-Not-Before``; the queue's retry consumer receives it, and a copy
  that is not yet due is ``-NAK``-ed with the remaining delay, so it waits at the server,
  not in this process. NATS delays each message on its own, so there are no delay tiers
  and no head-of-line blocking (RabbitMQ's TTL queues need tiers).
- ``dead_letter(headers)`` publishes a copy to ``actorbus.dlq.<queue>`` with the headers and
  the origin, awaits its JetStream ack, then acks the original (a crash in between
  duplicates; the copy's ``Nats-Msg-Id`` makes the second copy a duplicate JetStream drops).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..._log import get_logger
from ...messages import Envelope
from .._deadletter import (
    REASON_REJECTED,
    XH_ATTEMPT,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from ._mapping import (
    H_MESSAGE_ID,
    H_NOT_BEFORE,
    H_ORIGINAL_ID,
    direct_subject,
    headers_for,
    retry_subject,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ("Holder", "NatsDelivery")

_log = get_logger("actorbus.brokers", broker="nats")


class Holder(Protocol):
    """Who holds a delivery unsettled: a subscription (its prefetch) or the broker (``get``)."""

    def take(self, delivery: NatsDelivery) -> None:
        """Hold ``delivery`` unsettled."""
        ...

    def release(self, delivery: NatsDelivery) -> None:
        """Forget ``delivery``: it was settled."""
        ...

    def dead_letters(self, queue: str) -> bool:
        """Whether ``queue`` has a dead-letter queue."""
        ...

    async def publish_copy(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish a copy (retry or dead letter) and await its JetStream ack."""
        ...


class NatsDelivery:
    """A JetStream message consumed from ``queue``, to be settled exactly once."""

    __slots__ = (
        "_holder",
        "_msg",
        "_settled",
        "_sync",
        "envelope",
        "exchange",
        "queue",
        "retry_copy",
    )

    def __init__(
        self,
        msg: Msg,
        envelope: Envelope,
        exchange: str,
        queue: str,
        holder: Holder,
        *,
        sync: bool = False,
        retry_copy: bool = False,
    ) -> None:
        self._msg = msg
        self.envelope = envelope
        self.exchange = exchange
        self.queue = queue
        self._holder = holder
        self._settled = False
        self._sync = sync
        self.retry_copy = retry_copy

    def __repr__(self) -> str:
        state = "settled" if self._settled else "unsettled"
        return f"<NatsDelivery queue={self.queue!r} {self.envelope!r} {state}>"

    @property
    def body(self) -> bytes:
        """The raw payload."""
        return self._msg.data

    @property
    def settled(self) -> bool:
        """Whether it was settled (or given back when its broker closed)."""
        return self._settled

    def _release(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._holder.release(self)
        return True

    async def ack(self) -> None:
        """Confirm that the message was processed; the server forgets it for this queue."""
        if not self._release():
            return
        if self._sync:
            await self._msg.ack_sync()
        else:
            await self._msg.ack()

    async def nack(self, *, requeue: bool = True) -> None:
        """Redeliver the message at once (``-NAK``), or dead-letter it (reason ``rejected``)."""
        if requeue:
            if self._release():
                await self._msg.nak()
            return
        await self.dead_letter({XH_REASON: REASON_REJECTED})

    async def give_back(self) -> None:
        """Requeue without telling the holder (the broker is closing)."""
        if not self._settled:
            self._settled = True
            await self._msg.nak()

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Deliver a copy after ``delay`` seconds as the next attempt, with ``headers`` added."""
        if not self._release():
            return
        env = self.envelope
        attempt = env.attempt + 1
        extra = dict(headers or {})
        extra[XH_ATTEMPT] = attempt
        h = headers_for(self.exchange, env, extra)
        h[H_ORIGINAL_ID] = env.message_id
        h[H_MESSAGE_ID] = f"{env.message_id}:retry:{self.queue}:{attempt}"
        h[H_NOT_BEFORE] = repr(time.time() + max(delay, 0.0))
        try:
            await self._holder.publish_copy(retry_subject(self.queue), self._msg.data, h)
        except Exception:
            _log.exception("retry_publish_failed", queue=self.queue, message_id=env.message_id)
            await self._msg.nak(delay=max(delay, 0.0))
            return
        await self._msg.ack_sync()

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to ``<queue>.dlq`` with ``headers`` and its origin recorded."""
        if not self._release():
            return
        env = self.envelope
        if self.queue.endswith(".dlq") or not self._holder.dead_letters(self.queue):
            _log.warning("dead_letter_dropped", queue=self.queue, message_id=env.message_id,
                         reason="the queue has no dead-letter queue")  # fmt: skip
            if self.queue.endswith(".dlq"):
                await self._msg.nak()  # a dead letter stays where it is
            else:
                await self._msg.term()
            return
        extra = dict(headers)
        extra.setdefault(XH_ORIGINAL_EXCHANGE, self.exchange)
        extra.setdefault(XH_ORIGINAL_ROUTING_KEY, env.routing_key)
        extra.setdefault(XH_ORIGINAL_QUEUE, self.queue)
        h = headers_for(self.exchange, env, extra)
        h[H_ORIGINAL_ID] = env.message_id
        h[H_MESSAGE_ID] = f"{env.message_id}:dlq:{self.queue}"
        try:
            await self._holder.publish_copy(direct_subject(f"{self.queue}.dlq"), self._msg.data, h)
        except Exception:
            _log.exception("dead_letter_failed", queue=self.queue, message_id=env.message_id)
            await self._msg.nak()
            raise
        await self._msg.ack_sync()
