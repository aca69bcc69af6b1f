"""Clocks: the source of time for restart backoff and other delays.

The runtime never calls ``anyio.sleep`` for policy delays directly; it asks a :class:`Clock`, so
tests can swap in a :class:`ManualClock` and check timing without real sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import anyio
import anyio.lowlevel

__all__ = ("Clock", "ManualClock", "SystemClock")


class Clock(Protocol):
    """A source of time that can also sleep."""

    def now(self) -> float:
        """Return the current time in seconds (monotonic; the origin is arbitrary)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The event loop's monotonic clock (``anyio.current_time`` / ``anyio.sleep``)."""

    __slots__ = ()

    def now(self) -> float:
        """Return the event loop's current time."""
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of real time."""
        await anyio.sleep(seconds)


class ManualClock:
    """Virtual time for tests: time moves only when :meth:`advance` is awaited.

    ``now()`` returns the virtual time; ``sleep()`` blocks until ``advance()`` has moved the time
    to or past the sleeper's deadline. Sleepers wake in deadline order, and each one gets to run
    until every task is blocked again before time moves on, so a task that sleeps again inside
    the advanced window is woken in the same ``advance()``.

    Args:
        start: The initial virtual time.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []  # a heap by deadline
        self._order = itertools.count()
        self._changed: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:g}, sleepers={len(self._sleepers)})"

    def now(self) -> float:
        """Return the virtual time."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return len(self._sleepers)

    @property
    def next_deadline(self) -> float | None:
        """The virtual time at which the next sleeper wakes, or ``None`` if nobody sleeps."""
        return self._sleepers[0][0] if self._sleepers else None

    async def sleep(self, seconds: float) -> None:
        """Block until :meth:`advance` moves the virtual time ``seconds`` past now.

        A non-positive ``seconds`` only yields to the event loop once.
        """
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (self._now + seconds, next(self._order), event)
        heapq.heappush(self._sleepers, entry)
        self._notify()
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled while sleeping: forget the deadline
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
                self._notify()

    async def advance(self, seconds: float) -> None:
        """Move the virtual time forward and let every sleeper that is due run.

        Args:
            seconds: How far to move; zero just lets due sleepers run.

        Raises:
            ValueError: If ``seconds`` is negative or not a number.
        """
        if not seconds >= 0 or math.isinf(seconds):
            raise ValueError(
                f"ManualClock.advance() needs a finite, non-negative number of seconds, "
                f"got {seconds!r}"
            )
        target = self._now + seconds
        await anyio.lowlevel.checkpoint()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            while self._sleepers and self._sleepers[0][0] <= self._now:
                heapq.heappop(self._sleepers)[2].set()
            self._notify()
            await anyio.wait_all_tasks_blocked()
        self._now = max(self._now, target)

    async def wait_for_sleepers(self, n: int = 1, *, timeout: float | None = 5.0) -> None:
        """Wait until at least ``n`` tasks sleep on this clock (no polling).

        Args:
            n: The number of sleepers to wait for.
            timeout: Real seconds to wait at most; ``None`` waits for ever.

        Raises:
            TimeoutError: Fewer than ``n`` tasks slept within ``timeout`` (the message says
                how many did), so a test that waits for a sleep that never comes fails fast.
        """
        await anyio.lowlevel.checkpoint()
        with anyio.move_on_after(timeout) as scope:
            while len(self._sleepers) < n:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
        if scope.cancelled_caught:
            raise TimeoutError(
                f"waited {timeout:g} s for {n} task(s) to sleep on {self!r}, "
                f"but {len(self._sleepers)} did"
            )

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()
