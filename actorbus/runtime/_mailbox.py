"""The bounded mailbox of an actor: a deque with waiters, plus statistics.

The mailbox outlives the actor instance that consumes it: when a supervisor restarts an actor,
the new instance continues with the queued messages (Akka semantics).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio

from actorbus.exceptions import ActorStoppedError, ConfigurationError, MailboxFullError

from .._backoff import is_count

__all__ = ("Mailbox", "MailboxStatistics")


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

    One consumer (the actor's task) takes messages with :meth:`get_nowait` and, when that raises
    ``anyio.WouldBlock``, waits with :meth:`wait`. Waiting is separate from taking so that the
    consumer can be woken (:meth:`interrupt`) without cancelling a receive, which could lose a
    message that was handed over at the same moment.

    It is a :class:`collections.deque` with a waiter for the consumer and a FIFO of blocked
    senders: putting and taking a message costs an append and a ``popleft`` (~0.1 µs for
    both, against ~0.2 µs for an anyio memory object stream's ``send_nowait`` and
    ``receive_nowait``). A sender blocked on a full mailbox hands its message over with its
    place in line: when a slot frees, the first blocked sender's message moves in, so blocked
    senders keep their order and a later ``put_nowait`` cannot overtake them.

    Args:
        name: The owning actor's name, used in errors.
        capacity: The maximum number of queued messages; at least 1.

    Raises:
        ConfigurationError: If ``capacity`` is not a positive integer.
    """

    __slots__ = (
        "_closed",
        "_items",
        "_senders",
        "_waiter",
        "capacity",
        "failed",
        "name",
        "processed",
    )

    def __init__(self, name: str, capacity: int) -> None:
        if not is_count(capacity, minimum=1):
            raise ConfigurationError(
                f"mailbox size of actor {name!r} must be a positive integer, got {capacity!r}"
            )
        self.name = name
        self.capacity = capacity
        self.processed = 0
        self.failed = 0
        self._items: deque[Any] = deque()
        # Blocked senders in arrival order: their wake-up event and the message they bring.
        self._senders: dict[anyio.Event, Any] = {}
        self._waiter: anyio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Mailbox {self.name!r} {len(self._items)}/{self.capacity}>"

    @property
    def closed(self) -> bool:
        """Whether the mailbox refuses new messages."""
        return self._closed

    def get_nowait(self) -> Any:
        """Take the next message.

        Raises:
            anyio.WouldBlock: The mailbox is empty (and open).
            anyio.EndOfStream: The mailbox is closed and empty.
        """
        items = self._items
        if not items:
            if self._closed:
                raise anyio.EndOfStream
            raise anyio.WouldBlock
        item = items.popleft()
        if self._senders:
            self._admit_sender()
        return item

    def _admit_sender(self) -> None:
        """Move the first blocked sender's message into the freed slot and wake it."""
        senders = self._senders
        event = next(iter(senders))
        self._items.append(senders.pop(event))
        event.set()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def put_nowait(self, item: Any) -> None:
        """Queue ``item`` if there is room, without waiting.

        Raises:
            MailboxFullError: If the mailbox is full.
            ActorStoppedError: If the mailbox is closed.
        """
        if self._closed:
            raise ActorStoppedError(self.name)
        items = self._items
        if len(items) >= self.capacity:
            raise MailboxFullError(self.name, self.capacity)
        items.append(item)
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
        if self._closed:
            raise ActorStoppedError(self.name)
        items = self._items
        if len(items) < self.capacity and not self._senders:
            items.append(item)
            self._wake()
            return
        event = anyio.Event()
        self._senders[event] = item
        try:
            await event.wait()
        except BaseException:
            # Cancelled before its message moved in: it was not sent.
            self._senders.pop(event, None)
            raise
        if event in self._senders:  # woken by close(), not by a free slot
            del self._senders[event]
            raise ActorStoppedError(self.name)

    async def wait(self) -> None:
        """Wait until a message may be available, the mailbox closes or :meth:`interrupt` runs.

        Call only after :meth:`get_nowait` raised ``anyio.WouldBlock``; may return spuriously.
        """
        waiter = self._waiter = anyio.Event()
        try:
            await waiter.wait()
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def interrupt(self) -> None:
        """Wake the consumer if it is waiting in :meth:`wait`."""
        self._wake()

    def close(self) -> None:
        """Refuse new messages; the queued ones can still be taken, then ``EndOfStream``.

        Senders blocked in :meth:`put` get ``ActorStoppedError``.
        """
        self._closed = True
        for event in self._senders:
            event.set()
        self._wake()

    def dispose(self) -> None:
        """Close for good, once no actor will consume the mailbox again.

        Queued messages are dropped; call :meth:`clear` first to see them.
        """
        self.close()
        self._items.clear()

    def clear(self) -> list[Any]:
        """Remove and return every queued message (and those of blocked senders)."""
        items = list(self._items)
        self._items.clear()
        senders = self._senders
        while senders:
            event = next(iter(senders))
            items.append(senders.pop(event))
            event.set()
        return items

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's depth, capacity and counters."""
        return MailboxStatistics(
            name=self.name,
            capacity=self.capacity,
            depth=len(self._items),
            senders_waiting=len(self._senders),
            processed=self.processed,
            failed=self.failed,
            closed=self.closed,
        )
