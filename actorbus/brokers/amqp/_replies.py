"""Direct reply-to: requests and their replies on one channel, with no queue per requester.

RabbitMQ's ``amq.rabbitmq.reply-to`` pseudo-queue (docs: "Direct Reply-to"): the requester
consumes it in no-ack mode and publishes its requests with ``reply_to=amq.rabbitmq.reply-to``
on the **same channel** (on another channel the broker refuses the publish with
``PRECONDITION_FAILED - fast reply consumer does not exist``); the broker rewrites
``reply_to`` into an address that routes back to this consumer through the default exchange.
Replies are at most once: one that arrives while the channel is being reopened is lost, and
the requester's timeout covers it.

The channel is in confirm mode, so a mandatory request that no queue receives fails at once
with :class:`~actorbus.exceptions.UnroutableError` (the ``basic.return`` arrives before the
confirm). Publishing reuses :class:`~._publisher.Publisher` (the confirm window, the error
translation); only opening the channel differs: every (re)open consumes the pseudo-queue
before the first publish.
"""

from __future__ import annotations

import asyncio

import aiormq.abc

from ..._log import get_logger
from ...exceptions import BrokerConnectionError
from .._protocol import REPLY_ADDRESS_PREFIX, OutboundMessage, ReplyCallback
from ._connection import ConnectionManager
from ._errors import translate
from ._mapping import read_envelope
from ._publisher import Publisher

__all__ = ("AmqpReplyChannel",)

_log = get_logger("actorbus.brokers.amqp")


class AmqpReplyChannel:
    """A confirm-mode channel that consumes ``amq.rabbitmq.reply-to`` and publishes requests.

    Args:
        manager: The broker's connection manager.
        on_reply: Gets every reply (envelope, body); runs on the event loop.
        reconnect_timeout: How long a publish waits for a lost connection to come back.
        max_message_size: Larger requests are refused before sending; ``0``: no limit.
    """

    address = REPLY_ADDRESS_PREFIX

    def __init__(
        self,
        manager: ConnectionManager,
        on_reply: ReplyCallback,
        *,
        reconnect_timeout: float,
        max_message_size: int,
    ) -> None:
        self._manager = manager
        self._on_reply = on_reply
        self._reconnect_timeout = reconnect_timeout
        self._publisher = Publisher(
            manager,
            confirm_window=1000,
            reconnect_timeout=reconnect_timeout,
            max_message_size=max_message_size,
        )
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<AmqpReplyChannel {self.address!r}>"

    async def open(self) -> None:
        """Open the channel and consume the pseudo-queue (again after a reconnection)."""
        channel = self._publisher.channel
        if channel is not None and not channel.is_closed:
            return
        async with self._lock:  # held only while (re)opening, never per request
            channel = self._publisher.channel
            if channel is not None and not channel.is_closed:
                return
            if self._closed:
                raise BrokerConnectionError(self._manager.url, "the reply channel is closed")
            connection = await self._manager.wait_ready(self._reconnect_timeout)
            try:
                channel = await connection.channel(publisher_confirms=True)
                await channel.basic_consume(REPLY_ADDRESS_PREFIX, self._deliver, no_ack=True)
            except Exception as exc:
                raise translate(exc, url=self._manager.url, queue=REPLY_ADDRESS_PREFIX) from exc
            self._publisher.channel = channel
            _log.debug("amqp_reply_channel_opened", channel=channel.number)

    async def _deliver(self, message: aiormq.abc.DeliveredMessage) -> None:
        envelope, _ = read_envelope(message.delivery, message.header.properties)  # type: ignore[arg-type]
        try:
            self._on_reply(envelope, message.body)
        except Exception as exc:  # a callback must not raise; never kill aiormq's reader
            _log.warning("reply_callback_failed", error=repr(exc))

    def lost(self) -> None:
        """Forget the channel of a lost connection; the next publish reopens it."""
        self._publisher.lost()

    async def publish(self, message: OutboundMessage) -> None:
        """Publish a request on this channel and wait for the broker's confirm.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue received it.
            PublishNackedError: The broker refused it.
            BrokerConnectionError: The connection was lost before the confirm arrived.
        """
        await self.open()
        await self._publisher.publish(message)

    async def close(self) -> None:
        """Close the channel; later replies to it are dropped by the broker."""
        self._closed = True
        channel, self._publisher.channel = self._publisher.channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:  # closed with its connection already
                _log.debug("amqp_reply_channel_close_failed", error=repr(exc))
