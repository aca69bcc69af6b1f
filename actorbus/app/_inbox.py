"""The idempotency inbox: each consumer processes an ``eventId`` once.

The inbox remembers, per consumer, the ids it processed *and the messages their handling
published*. A redelivered message is not handled again; its recorded messages are published
again instead (with their original ``eventId``, so downstream consumers deduplicate them).
That closes the gap between "effect done" and "effect announced": a crash after the record
but before the publishes were confirmed loses nothing and duplicates nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..brokers import OutboundMessage

__all__ = ("Inbox", "MemoryInbox")


@runtime_checkable
class Inbox(Protocol):
    """Where consumers record the ``eventId``s they processed.

    An inbox that answers without I/O may also offer ``lookup_nowait`` and ``record_nowait``
    (the same signatures, synchronous) in the class that defines ``lookup`` and ``record``, as
    :class:`MemoryInbox` does: the pipeline then calls those and saves two awaits per delivery.
    """

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """Return what handling ``message_id`` published, or ``None`` if it was never handled."""
        ...

    async def record(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """Record that ``consumer`` handled ``message_id`` and published ``published``."""
        ...


class MemoryInbox:
    """An in-process inbox bounded to the ``capacity`` most recent ids per process.

    It deduplicates redeliveries within one process's lifetime (the common case: a retry
    or a requeue after a lost ack). Services whose effects must survive a restart keep
    their inbox in their own database, in the same transaction as the effect.

    Args:
        capacity: How many ids to remember; the oldest are forgotten first.
    """

    __slots__ = ("_capacity", "_order", "_seen")

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        # A dict and a FIFO of its keys: cheaper per delivery than an OrderedDict.
        self._seen: dict[tuple[str, str], Sequence[OutboundMessage]] = {}
        self._order: deque[tuple[str, str]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """Return what handling ``message_id`` published, or ``None`` if it was never handled."""
        return self._seen.get((consumer, message_id))

    async def record(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """Record that ``consumer`` handled ``message_id`` and published ``published``."""
        self.record_nowait(consumer, message_id, published)

    def lookup_nowait(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """:meth:`lookup` without an ``await``: the pipeline's fast path for this inbox."""
        return self._seen.get((consumer, message_id))

    def record_nowait(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """:meth:`record` without an ``await``: the pipeline's fast path for this inbox."""
        key = (consumer, message_id)
        seen = self._seen
        if key not in seen:
            order = self._order
            order.append(key)
            if len(order) > self._capacity:
                del seen[order.popleft()]
        seen[key] = tuple(published) if published else ()
