"""Fault injection for the memory broker: refused publishes, a lost connection, duplicates.

:class:`MemoryFaults` is reached as ``broker.faults``. It counts the publishes still to refuse
and arms the server's duplicate deliveries itself; losing and restoring the connection is the
connection's own work, so the connection hands in what that takes when it builds its faults
(callables, not itself: nothing here knows the connection's class).
"""

from __future__ import annotations

from collections.abc import Callable

from ...exceptions import ConfigurationError
from ._server import MemoryServer

__all__ = ("MemoryFaults",)


class MemoryFaults:
    """Fault injection for tests: refused publishes, a lost connection, duplicates.

    Reached as ``broker.faults``. Armed faults cost the hot path one attribute check.

    Args:
        server: The server whose deliveries get duplicated.
        dropped: Whether the connection is dropped now.
        drop: Lose the connection (a no-op if it is closed or dropped already).
        restore: Reconnect after a drop (a no-op if it is not dropped).
        rearm: Called after the publish failures changed: the connection re-decides whether
            its publishes take the checked path.
    """

    __slots__ = ("_drop", "_dropped", "_fail_publishes", "_rearm", "_restore", "_server")

    def __init__(
        self,
        server: MemoryServer,
        *,
        dropped: Callable[[], bool],
        drop: Callable[[], None],
        restore: Callable[[], None],
        rearm: Callable[[], None],
    ) -> None:
        self._server = server
        self._dropped = dropped
        self._drop = drop
        self._restore = restore
        self._rearm = rearm
        self._fail_publishes = 0

    @property
    def connection_dropped(self) -> bool:
        """Whether :meth:`drop_connection` is in effect."""
        return self._dropped()

    @property
    def pending_publish_failures(self) -> int:
        """How many of the next publishes will still be refused."""
        return self._fail_publishes

    def fail_next_publishes(self, count: int = 1) -> None:
        """Make the next ``count`` publishes raise :class:`PublishNackedError` (not stored).

        In ``publish_batch`` every message counts as one publish.
        """
        if count < 0:
            raise ConfigurationError(f"count must be >= 0, got {count!r}")
        self._fail_publishes += count
        self._rearm()

    def refuse_publish(self) -> bool:
        """Count one publish against the armed failures: whether it must be refused.

        Called by the connection for each publish while failures are armed.
        """
        if self._fail_publishes <= 0:
            return False
        self._fail_publishes -= 1
        return True

    def drop_connection(self) -> None:
        """Lose the connection until :meth:`restore`.

        Subscriptions become inactive and ``is_ready`` false; their unsettled deliveries are
        requeued as redeliveries (settling them later is a no-op, as their ack would be lost
        with a real connection); every operation but settling and cancelling raises
        :class:`BrokerConnectionError`. Messages delayed for retry keep waiting.
        """
        self._drop()

    def restore(self) -> None:
        """Reconnect after :meth:`drop_connection`: subscriptions resume consuming."""
        self._restore()

    def duplicate_next_deliveries(self, count: int = 1) -> None:
        """Deliver each of the next ``count`` dispatched messages twice.

        The copy is a redelivery (``redelivered=True``, ``attempt`` + 1) put at the head of
        the queue, as if the first delivery's ack had been lost: what consumers' inboxes
        exist to absorb. Applies to the server, whichever connection consumes.
        """
        if count < 0:
            raise ConfigurationError(f"count must be >= 0, got {count!r}")
        self._server.duplicates += count

    def reset(self) -> None:
        """Disarm every fault and restore a dropped connection."""
        self._fail_publishes = 0
        self._server.duplicates = 0
        if self._dropped():
            self._restore()
        self._rearm()
