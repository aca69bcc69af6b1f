"""Test actors and an awaitable journal, so tests wait on events and never sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from actorbus.runtime import Actor

# A safety net against hangs; tests wait on events, this only bounds a broken test.
WAIT = 5.0


class Journal:
    """An append-only list of tuples that tests can await."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, ...]] = []
        self._changed = anyio.Event()

    def add(self, *entry: Any) -> None:
        self.entries.append(entry)
        self._changed.set()
        self._changed = anyio.Event()

    def count(self, *entry: Any) -> int:
        return self.entries.count(entry)

    def of(self, label: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.entries if e[0] == label]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        with anyio.fail_after(WAIT):
            while not predicate():
                await self._changed.wait()

    async def wait_count(self, n: int, *entry: Any) -> None:
        await self.wait_for(lambda: self.count(*entry) >= n)


class Boom(Exception):
    """The failure that test actors raise on the message "boom"."""


class Probe(Actor):
    """Records its hooks; fails on "boom"; waits on an optional gate before each message."""

    def __init__(
        self,
        journal: Journal,
        label: str,
        *,
        gate: anyio.Event | None = None,
        fail_start: bool = False,
    ) -> None:
        self.journal = journal
        self.label = label
        self.gate = gate
        self.fail_start = fail_start

    async def on_start(self) -> None:
        self.journal.add(self.label, "start")
        if self.fail_start:
            raise Boom(f"{self.label} cannot start")

    async def receive(self, message: Any) -> Any:
        if self.gate is not None:
            self.journal.add(self.label, "gated", message)
            await self.gate.wait()
        self.journal.add(self.label, "receive", message)
        if message == "boom":
            raise Boom(f"{self.label} failed on purpose")
        if message == "hang":
            try:
                await anyio.sleep_forever()
            finally:
                self.journal.add(self.label, "cancelled")
        return ("echo", message)

    async def on_failure(self, exc: Exception, message: Any) -> None:
        self.journal.add(self.label, "failure", message)

    async def on_stop(self) -> None:
        self.journal.add(self.label, "stop")


def probe(journal: Journal, label: str, **kwargs: Any) -> Callable[[], Probe]:
    """Return a factory of :class:`Probe` for a ChildSpec."""
    return lambda: Probe(journal, label, **kwargs)
