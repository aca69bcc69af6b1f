"""Publishing with publisher confirms: persistent messages, pipelined, a bounded window.

One channel in confirm mode carries every publish of a broker. :meth:`Publisher.publish`
returns once the broker confirmed the message (``basic.ack``); a ``basic.return`` of a
mandatory message becomes :class:`~actorbus.exceptions.UnroutableError`, a ``basic.nack``
:class:`~actorbus.exceptions.PublishNackedError`, and a connection lost before the confirm
:class:`~actorbus.exceptions.BrokerConnectionError` — the caller retries; nothing is
dropped silently.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiormq.abc
import aiormq.exceptions
from pamqp.commands import Basic

from ..._log import get_logger
from ...exceptions import BrokerConnectionError, PublishError, PublishTooLargeError
from .._protocol import REPLY_ADDRESS_PREFIX, OutboundMessage
from ._connection import ConnectionManager
from ._errors import translate
from ._mapping import build_properties

_log = get_logger("actorbus.brokers.amqp")

__all__ = ("Publisher",)


class Publisher:
    """Publishes on one confirm-mode channel, reopened after every reconnection.

    Args:
        manager: The connection manager, to wait for a reconnection.
        confirm_window: At most this many publishes await their confirm at once; more
            wait for room (measured: 100 → 1000 gave 1.06x, more buys nothing).
        reconnect_timeout: How long a publish waits for a lost connection to come back
            before it fails with :class:`~actorbus.exceptions.BrokerConnectionError`.
        max_message_size: Larger bodies are refused before sending; ``0``: no limit.
    """

    def __init__(
        self,
        manager: ConnectionManager,
        *,
        confirm_window: int,
        reconnect_timeout: float,
        max_message_size: int = 0,
    ) -> None:
        self._manager = manager
        self._max_size = max_message_size
        self._url = manager.url
        self._window = max(1, confirm_window)
        self._reconnect_timeout = reconnect_timeout
        self.channel: aiormq.abc.AbstractChannel | None = None
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._idle: asyncio.Event = asyncio.Event()
        self._idle.set()
        self._reopen_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[Any]] = set()

    async def open(self, connection: aiormq.abc.AbstractConnection) -> None:
        """Open the publishing channel on a new connection (confirms on)."""
        self.channel = await connection.channel(publisher_confirms=True)

    def lost(self) -> None:
        """Forget the channel of a lost connection; its pending confirms fail on their own."""
        self.channel = None

    async def _channel(self) -> aiormq.abc.AbstractChannel:
        channel = self.channel
        if channel is not None and not channel.is_closed:
            return channel
        if self._manager.ready.is_set():
            # The channel died alone (e.g. a publish to a missing exchange closes it), or
            # was retired after a nack (see _retire).
            async with self._reopen_lock:  # concurrent publishers reopen it once
                channel = self.channel
                if channel is not None and not channel.is_closed:
                    return channel
                connection = self._manager.connection
                if connection is not None and not connection.is_closed:
                    try:
                        channel = await connection.channel(publisher_confirms=True)
                    except Exception as exc:
                        raise translate(exc, url=self._url) from exc
                    self.channel = channel
                    return channel
        await self._manager.wait_ready(self._reconnect_timeout)
        channel = self.channel
        if channel is None or channel.is_closed:
            raise BrokerConnectionError(self._url, "the publishing channel is not open")
        return channel

    def _retire(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Publish on a fresh channel from now on: ``channel`` got a ``basic.nack``.

        On RabbitMQ 3.10 a channel that published to a quorum queue during its leader
        election can keep getting nacks for that queue long after a new leader was elected
        (16 s and more seen in the cluster test), while a new channel is served at once. The
        old channel is closed in the background; publishes still waiting on it fail with
        BrokerConnectionError and are retried by their callers.
        """
        if self.channel is not channel:
            return
        self.channel = None
        _log.warning("amqp_publish_channel_retired", reason="basic.nack")
        task = asyncio.get_running_loop().create_task(_close_quietly(channel))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _acquire(self) -> None:
        while self._in_flight >= self._window:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if not waiter.cancelled() and self._in_flight < self._window:
                    self._wake_one()
                raise
        self._in_flight += 1
        self._idle.clear()

    def _release(self) -> None:
        self._in_flight -= 1
        if self._waiters:
            self._wake_one()
        if not self._in_flight:
            self._idle.set()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Basic.Properties,
        *,
        mandatory: bool,
    ) -> None:
        """Publish and wait for the confirm.

        Raises:
            UnroutableError: ``mandatory`` and no queue received it.
            PublishNackedError: The broker refused it.
            BrokerConnectionError: The connection was lost before the confirm arrived, or did
                not come back within the reconnect timeout.
        """
        if self._in_flight >= self._window:
            await self._acquire()
        else:
            self._in_flight += 1
            self._idle.clear()
        try:
            channel = self.channel
            if channel is None or channel.is_closed:
                channel = await self._channel()
            await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                wait=False,  # type: ignore[call-arg]  # aiormq.Channel has it, the ABC not
            )
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled
            raise BrokerConnectionError(
                self._url, "the channel closed before the broker confirmed the message"
            ) from exc
        except PublishError:
            raise
        except BrokerConnectionError:
            raise
        except Exception as exc:
            if isinstance(exc, aiormq.exceptions.DeliveryError) and channel is not None:
                self._retire(channel)
            raise translate(
                exc,
                url=self._url,
                exchange=exchange,
                routing_key=routing_key,
                message_id=properties.message_id,
            ) from exc
        finally:
            self._release()

    async def publish(self, message: OutboundMessage) -> None:
        """Publish ``message`` persistently and wait until the broker confirmed it.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue received it.
            PublishNackedError: The broker refused it.
            PublishTooLargeError: The body exceeds ``max_message_size``; nothing was sent.
            BrokerConnectionError: The connection was lost before the confirm arrived.
        """
        envelope = message.envelope
        limit = self._max_size
        if limit and len(message.body) > limit:
            raise PublishTooLargeError(
                len(message.body),
                limit,
                f"exchange {message.exchange!r}, routing key {envelope.routing_key!r}",
            )
        exchange = message.exchange
        key = envelope.routing_key
        mandatory = message.mandatory
        if mandatory and not exchange and key.startswith(REPLY_ADDRESS_PREFIX):
            # RabbitMQ 3.10 both delivers a mandatory reply to a direct reply-to address and
            # returns it as unroutable (seen in tests/amqp/test_request.py): never mandatory.
            mandatory = False
        await self.publish_raw(
            exchange, key, message.body, build_properties(envelope), mandatory=mandatory
        )

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish all of ``messages`` pipelined, then wait for every confirm.

        Raises:
            PublishError: The first failure, after every message was confirmed or failed.
        """
        if not messages:
            return
        if len(messages) == 1:
            await self.publish(messages[0])
            return
        results = await asyncio.gather(*[self.publish(m) for m in messages], return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def drain(self, within: float) -> None:
        """Wait (up to ``within`` seconds) until no publish awaits its confirm."""
        if self._in_flight:
            try:
                async with asyncio.timeout(within):
                    await self._idle.wait()
            except TimeoutError:
                pass


async def _close_quietly(channel: aiormq.abc.AbstractChannel) -> None:
    try:
        await channel.close()
    except Exception as exc:  # already closed with its connection: nothing to do
        _log.debug("amqp_retired_channel_close_failed", error=repr(exc))
