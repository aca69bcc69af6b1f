"""Deliveries handed over where aiormq's connection reader parses them: no task per message.

aiormq passes every frame of a channel through an ``asyncio.Queue`` (``Channel.frames``) to
the channel's reader task. For a ``basic.deliver`` that task takes the content header and body
frames from the queue, builds a ``DeliveredMessage`` and runs the consumer callback as a task
of its own (``Channel.create_task``: a task, two future-store registrations, done callbacks,
and one more event-loop step). On the consume benchmark that hand-over cost about as much
CPU per delivery as everything actorbus does with it.

A subscription's callback only builds the delivery and puts it in a mailbox: it needs neither
a task nor the queue hop. :class:`InlineDeliveries` replaces ``put`` on *one* channel's frame
queue (an instance attribute: other channels, and other users of aiormq in the process, keep
aiormq's path) and assembles the deliver, header and body frames of the consumers registered
with it as the connection reader hands them over, then calls their synchronous callback.
Every other frame, and deliveries to any other consumer tag, go to aiormq's queue as before.

Order: AMQP sends the frames of one message contiguously on a channel, and every delivery of
a registered consumer takes this path, so deliveries reach the callback in arrival order. A
delivery can overtake a non-delivery frame still queued for aiormq's reader: ``consume-ok``
(the tag is registered before ``basic.consume`` is sent), ``cancel-ok`` or a server
``basic.cancel`` (the broker sends no delivery for a tag after either) and ``channel.close``
(nothing follows it). A delivery for a tag aiormq no longer lists in ``Channel.consumers``
takes aiormq's path, which drops it as aiormq always did.

Relies on aiormq internals (read in the sources of 6.8.1, 7.0.0 and 7.2.4; the range pinned in
pyproject.toml is >=6.8,<7.3):

* the connection reader calls ``await channel.frames.put((weight, frame))`` for each frame of
  the channel, looking ``put`` up on every call;
* ``Channel.consumers`` holds the live consumer tags (aiormq removes one on cancel).

Ways out, each taking aiormq's own consumer path (a task per delivery), which the subscription
registers with ``basic.consume`` in any case:

* :func:`supported` is false when a channel's frame queue or consumer table is not what this
  module expects (not exactly an ``asyncio.Queue``, not a dict);
* ``?inline=0`` on the broker URL, or ``ACTORBUS_AMQP_INLINE=0`` in the environment, switches
  the path off without a release (see docs/rabbitmq.md);
* should a release stop handing frames to ``frames.put``, nothing reaches :meth:`put` and
  aiormq's reader delivers every message itself.

tests/amqp/test_inline.py checks the behaviour on RabbitMQ: deliveries reach the callback in
the connection reader's task, and in aiormq's consumer tasks when the path is off or refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiormq.abc
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from ..._log import get_logger

__all__ = ("InlineCallback", "InlineDeliveries", "supported")

#: Called with the ``basic.deliver`` frame, the message properties and the body. It runs in
#: aiormq's connection reader: it must not block and must not raise.
InlineCallback = Callable[[Basic.Deliver, Basic.Properties, bytes], None]

_log = get_logger("actorbus.brokers.amqp")

_Item = tuple[int, Any]  # (weight, frame), what aiormq queues

_Deliver = Basic.Deliver


def supported(channel: aiormq.abc.AbstractChannel) -> bool:
    """Whether ``channel`` has the frame queue and consumer table this module hooks into."""
    frames = getattr(channel, "frames", None)
    return (
        type(frames) is asyncio.Queue  # a subclass may put otherwise
        and "put" not in vars(frames)  # not hooked already
        and isinstance(getattr(channel, "consumers", None), dict)
    )


class InlineDeliveries:
    """Assembles one channel's deliveries in aiormq's connection reader; see the module doc.

    Args:
        channel: An open aiormq channel for which :func:`supported` is true.
    """

    __slots__ = ("_callback", "_consumers", "_deliver", "_got", "_header", "_parts", "_put",
                 "callbacks")  # fmt: skip

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        frames: asyncio.Queue[_Item] = channel.frames
        self._consumers: dict[str, Any] = channel.consumers  # type: ignore[attr-defined]
        self._put = frames.put  # aiormq's own path: the queue its channel reader reads
        #: Consumer tag → callback; register a tag *before* sending its ``basic.consume``.
        self.callbacks: dict[str, InlineCallback] = {}
        # The message being assembled: the callback it goes to, its deliver and header items,
        # the items of its body if it spans several frames, and their size so far.
        self._callback: InlineCallback | None = None
        self._deliver: _Item | None = None
        self._header: _Item | None = None
        self._parts: list[_Item] | None = None
        self._got = 0
        frames.put = self.put  # type: ignore[method-assign]

    async def put(self, item: _Item) -> None:
        """Take one frame from the connection reader (in place of ``Channel.frames.put``)."""
        callback = self._callback
        frame = item[1]
        if callback is None:  # between messages
            if frame.__class__ is _Deliver:
                tag: Any = frame.consumer_tag
                callback = self.callbacks.get(tag)
                if callback is not None and tag in self._consumers:
                    self._callback = callback
                    self._deliver = item
                    return
            await self._put(item)
            return
        header = self._header
        if header is None:  # the content header is due
            if frame.__class__ is not ContentHeader:
                await self._give_back(item)
                return
            if not frame.body_size:
                self._done(callback, frame, b"")
                return
            self._header = item
            return
        if frame.__class__ is not ContentBody:
            await self._give_back(item)
            return
        body: bytes = frame.value
        size: int = header[1].body_size
        parts = self._parts
        if parts is None:
            if len(body) >= size:
                self._done(callback, header[1], body)
                return
            self._parts = [item]  # larger than frame_max: the body comes in several frames
            self._got = len(body)
            return
        parts.append(item)
        got = self._got + len(body)
        if got < size:
            self._got = got
            return
        self._done(callback, header[1], b"".join([part[1].value for part in parts]))

    def _done(self, callback: InlineCallback, header: ContentHeader, body: bytes) -> None:
        deliver: Any = self._deliver
        self._callback = self._deliver = self._header = self._parts = None
        try:
            callback(deliver[1], header.properties, body)
        except Exception:  # pragma: no cover - callbacks catch their own; never the reader's
            _log.exception("amqp_inline_callback_failed", consumer_tag=deliver[1].consumer_tag)

    async def _give_back(self, item: _Item) -> None:
        """An unexpected frame mid-message: aiormq's reader gets them all, and fails as usual."""
        pending = [self._deliver, self._header, *(self._parts or ())]
        self._callback = self._deliver = self._header = self._parts = None
        for queued in pending:
            if queued is not None:
                await self._put(queued)
        await self._put(item)
