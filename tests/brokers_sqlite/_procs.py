"""Child processes that use the sqlite broker, and waiting for what they print."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).resolve().parents[2]
WORDS = ("got", "acked", "consuming", "holding", "committed")

#: Seconds any wait for a child's state may take (a bounded wait, not a sleep).
WITHIN = 30.0


class Child:
    """A running ``child.py``: its facts (lines) as they arrive, and how to end it."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def _read(self) -> None:
        assert self.process.stdout is not None
        stream = BufferedByteReceiveStream(self.process.stdout)
        try:
            while True:
                line = (await stream.receive_until(b"\n", 1 << 20)).decode()
                if line.split(" ", 1)[0] in WORDS:
                    self.lines.append(line)
                    self._changed.set()
                    self._changed = anyio.Event()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            self._changed.set()

    def words(self, word: str) -> list[str]:
        """The rest of every line that starts with ``word``, in order."""
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith(word + " ")]

    async def wait(self, probe: Callable[[], bool], what: str, within: float = WITHIN) -> None:
        """Wait until ``probe()`` holds, re-checking on every new line; bounded."""
        with anyio.move_on_after(within):
            while not probe():
                if self.process.returncode is not None:
                    break
                await self._changed.wait()
            else:
                return
        if not probe():
            raise AssertionError(
                f"child {self.process.pid} did not reach {what!r} within {within:g} s "
                f"(exit code {self.process.returncode}); last lines: {self.lines[-5:]}"
            )

    async def kill(self) -> None:
        """SIGKILL it and reap it (a zombie's pid still looks alive)."""
        if self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
        await self.process.wait()


async def wait_any(
    children: Sequence[Child], probe: Callable[[], bool], what: str, within: float = WITHIN
) -> None:
    """Wait until ``probe()`` holds, re-checking on every new line of any of ``children``."""
    with anyio.move_on_after(within):
        while not probe():
            # Taken before any await: a line arriving later sets one of these.
            changes = [c._changed for c in children]
            async with anyio.create_task_group() as tg:

                async def watch(change: anyio.Event, tg: TaskGroup = tg) -> None:
                    await change.wait()
                    tg.cancel_scope.cancel()

                for change in changes:
                    tg.start_soon(watch, change)
        return
    if not probe():
        lines = [c.lines[-3:] for c in children]
        raise AssertionError(f"children did not reach {what!r} within {within:g} s: {lines}")


@asynccontextmanager
async def child(tg: TaskGroup, *args: str) -> AsyncIterator[Child]:
    """Start ``child.py *args``; kill it on exit if it still runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await anyio.open_process(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        env=env,
    )
    c = Child(process)
    tg.start_soon(c._read)
    try:
        yield c
    finally:
        with anyio.CancelScope(shield=True):
            await c.kill()
