"""The bounded mailbox of an actor: an anyio memory object stream plus statistics.

The mailbox outlives the actor instance that consumes it: when a supervisor restarts an actor,
the new instance continues with the queued messages (Akka semantics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from actorbus.exceptions import ActorStoppedError, ConfigurationError, MailboxFullError

from ._backoff import _is_count

__all__ = ("Mailbox", "MailboxStatistics")

_CLOSED = (anyio.ClosedResourceError, anyio.BrokenResourceError)


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of one mailbox.

    Attributes:
        name: The actor that owns the mailbox.
        capacity: How many messages the mailbox holds before senders wait.
        depth: Messages queued now.
        senders_waiting: Tasks blocked in ``tell`` because the mailbox is full.
        processed: Messages the actor handled successfully.
        failed: Messages whose handling raised (each one failed the actor).
        closed: Whether the mailbox refuses new messages (the actor was stopped).
    """

    name: str
    capacity: int
    depth: int
    senders_waiting: int
    processed: int
    failed: int
    closed: bool


class Mailbox:
    """A bounded FIFO of messages for one actor, with a ``_nowait`` fast path.

    One consumer (the actor's task) takes messages with :attr:`get_nowait` and, when that raises
    ``anyio.WouldBlock``, waits with :meth:`wait`. Waiting is separate from taking so that the
    consumer can be woken (:meth:`interrupt`) without cancelling a receive, which could lose a
    message that was handed over at the same moment.

    Args:
        name: The owning actor's name, used in errors.
        capacity: The maximum number of queued messages; at least 1.

    Raises:
        ConfigurationError: If ``capacity`` is not a positive integer.
    """

    __slots__ = (
        "_closed",
        "_receive",
        "_send",
        "_send_nowait",
        "_waiter",
        "capacity",
        "failed",
        "get_nowait",
        "name",
        "processed",
    )

    get_nowait: Callable[[], Any]
    """Take the next message; raise ``anyio.WouldBlock`` if empty, ``anyio.EndOfStream`` once
    closed and empty."""

    def __init__(self, name: str, capacity: int) -> None:
        if not _is_count(capacity, minimum=1):
            raise ConfigurationError(
                f"mailbox size of actor {name!r} must be a positive integer, got {capacity!r}"
            )
        self.name = name
        self.capacity = capacity
        self.processed = 0
        self.failed = 0
        self._send, self._receive = anyio.create_memory_object_stream[Any](capacity)
        self._send_nowait = self._send.send_nowait
        self.get_nowait = self._receive.receive_nowait
        self._waiter: anyio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"<Mailbox {self.name!r} {stats.depth}/{self.capacity}>"

    @property
    def closed(self) -> bool:
        """Whether the mailbox refuses new messages."""
        return self._closed

    def put_nowait(self, item: Any) -> None:
        """Queue ``item`` if there is room, without waiting.

        Raises:
            MailboxFullError: If the mailbox is full.
            ActorStoppedError: If the mailbox is closed.
        """
        try:
            self._send_nowait(item)
        except anyio.WouldBlock:
            raise MailboxFullError(self.name, self.capacity) from None
        except _CLOSED:
            raise ActorStoppedError(self.name) from None
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def put(self, item: Any) -> None:
        """Queue ``item``, waiting for room if the mailbox is full.

        Returns without yielding to the event loop when there is room (the fast path).

        Raises:
            ActorStoppedError: If the mailbox is closed, or is closed while waiting.
        """
        try:
            self._send_nowait(item)
        except anyio.WouldBlock:
            try:
                await self._send.send(item)
            except _CLOSED:
                raise ActorStoppedError(self.name) from None
        except _CLOSED:
            raise ActorStoppedError(self.name) from None
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    async def wait(self) -> None:
        """Wait until a message may be available, the mailbox closes or :meth:`interrupt` runs.

        Call only after :attr:`get_nowait` raised ``anyio.WouldBlock``; may return spuriously.
        """
        waiter = self._waiter = anyio.Event()
        try:
            await waiter.wait()
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def interrupt(self) -> None:
        """Wake the consumer if it is waiting in :meth:`wait`."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def close(self) -> None:
        """Refuse new messages; the queued ones can still be taken, then ``EndOfStream``.

        Senders blocked in :meth:`put` get ``ActorStoppedError``.
        """
        self._closed = True
        self._send.close()
        self.interrupt()

    def dispose(self) -> None:
        """Close both ends for good, once no actor will consume the mailbox again.

        Queued messages are dropped; call :meth:`clear` first to see them.
        """
        self.close()
        self._receive.close()

    def clear(self) -> list[Any]:
        """Remove and return every queued message."""
        items: list[Any] = []
        while True:
            try:
                items.append(self.get_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return items

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's depth, capacity and counters."""
        stream = self._receive.statistics()
        return MailboxStatistics(
            name=self.name,
            capacity=self.capacity,
            depth=stream.current_buffer_used,
            senders_waiting=stream.tasks_waiting_send,
            processed=self.processed,
            failed=self.failed,
            closed=self.closed,
        )
