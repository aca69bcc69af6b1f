"""The idempotency inbox: each consumer processes an ``eventId`` once.

The inbox remembers, per consumer, the ids it processed *and the messages their handling
published*. A redelivered message is not handled again; its recorded messages are published
again instead (with their original ``eventId``, so downstream consumers deduplicate them).
That closes the gap between "effect done" and "effect announced": a crash after the record
but before the publishes were confirmed loses nothing and duplicates nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..brokers import OutboundMessage

__all__ = ("Inbox", "MemoryInbox")


@runtime_checkable
class Inbox(Protocol):
    """Where consumers record the ``eventId``s they processed."""

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

    __slots__ = ("_capacity", "_seen")

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], tuple[OutboundMessage, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        """Return what handling ``message_id`` published, or ``None`` if it was never handled."""
        return self._seen.get((consumer, message_id))

    async def record(
        self, consumer: str, message_id: str, published: Sequence[OutboundMessage]
    ) -> None:
        """Record that ``consumer`` handled ``message_id`` and published ``published``."""
        seen = self._seen
        seen[(consumer, message_id)] = tuple(published)
        if len(seen) > self._capacity:
            seen.popitem(last=False)
