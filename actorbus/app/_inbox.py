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


class _Seen:
    """One consumer's remembered ids, oldest first: a dict and a FIFO of its keys.

    Keyed by the message id alone (no tuple per lookup), and cheaper per delivery than an
    ``OrderedDict``.
    """

    __slots__ = ("ids", "order")

    def __init__(self) -> None:
        self.ids: dict[str, Sequence[OutboundMessage]] = {}
        self.order: deque[str] = deque()


class MemoryInbox:
    """An in-process inbox bounded to the ``capacity`` most recent ids of each consumer.

    It deduplicates redeliveries within one process's lifetime (the common case: a retry
    or a requeue after a lost ack). Services whose effects must survive a restart keep
    their inbox in their own database, in the same transaction as the effect.

    Args:
        capacity: How many ids to remember per consumer; the oldest are forgotten first.
    """

    __slots__ = ("_capacity", "_consumers")

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._consumers: dict[str, _Seen] = {}

    def __len__(self) -> int:
        return sum(len(seen.ids) for seen in self._consumers.values())

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """Return what handling ``message_id`` published, or ``None`` if it was never handled."""
        return self.lookup_nowait(consumer, message_id)

    async def record(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """Record that ``consumer`` handled ``message_id`` and published ``published``."""
        self.record_nowait(consumer, message_id, published)

    def lookup_nowait(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """:meth:`lookup` without an ``await``: the pipeline's fast path for this inbox."""
        seen = self._consumers.get(consumer)
        return None if seen is None else seen.ids.get(message_id)

    def record_nowait(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """:meth:`record` without an ``await``: the pipeline's fast path for this inbox."""
        seen = self._consumers.get(consumer)
        if seen is None:
            seen = self._consumers[consumer] = _Seen()
        ids = seen.ids
        if message_id not in ids:
            order = seen.order
            order.append(message_id)
            if len(order) > self._capacity:
                del ids[order.popleft()]
        ids[message_id] = tuple(published) if published else ()
