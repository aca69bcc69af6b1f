"""One SQLite connection per service, used from async code through a worker thread.

Every statement runs in :func:`anyio.to_thread.run_sync` behind one :class:`anyio.Lock`, so a
service has exactly one writer: transactions never interleave, and a check followed by an
update (``available >= qty`` then ``available - qty``) cannot race. WAL mode lets readers of
other processes (``sqlite3`` on the command line) look while the service writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

__all__ = ("Changes", "Database")

T = TypeVar("T")


class Changes:
    """A broadcast "something changed" signal, for waiting on a condition without polling.

    :meth:`notify` wakes every waiter; :meth:`wait_for` re-checks its condition after each
    wake-up. Taking the current event *before* checking means no notification is lost.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        """Wake everything waiting in :meth:`wait`/:meth:`wait_for`."""
        event, self._event = self._event, anyio.Event()
        event.set()

    async def wait(self) -> None:
        """Wait for the next :meth:`notify`."""
        await self._event.wait()

    async def wait_for(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Return once ``check()`` is true, re-checking after every notification.

        Wrap the call in :func:`anyio.fail_after` to bound it.
        """
        while True:
            event = self._event
            if await check():
                return
            await event.wait()


class Database:
    """A service's SQLite database: one connection, one writer, transactions in a thread.

    Use :meth:`open` (in a start-up hook) and :meth:`close` (in a shut-down hook).

    Attributes:
        path: The database file.
        changes: Notified after every committed write transaction.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = anyio.Lock()
        self.path = path
        self.changes = Changes()

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r})"

    @classmethod
    async def open(cls, path: Path, schema: str) -> Database:
        """Open (creating if needed) the database at ``path`` and apply ``schema``.

        Args:
            path: The database file; its directory must exist.
            schema: ``CREATE TABLE IF NOT EXISTS …`` statements, applied on every start.
        """

        def connect() -> sqlite3.Connection:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE takes
            # the write lock up front, so a transaction never fails half-way on SQLITE_BUSY).
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before we answer 202 / ack a delivery.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=5000")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.executescript(schema)
            except BaseException:
                conn.close()
                raise
            return conn

        return cls(await anyio.to_thread.run_sync(connect), path)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction: committed if it returns, else rolled back.

        Cancellation waits for the transaction to finish (the thread is never abandoned),
        so a transaction is always either committed or rolled back, never cut in two.
        """
        async with self._lock:
            result = await anyio.to_thread.run_sync(self._transaction, fn, "BEGIN IMMEDIATE")
        self.changes.notify()
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in a read transaction (a consistent snapshot)."""
        async with self._lock:
            return await anyio.to_thread.run_sync(self._transaction, fn, "BEGIN DEFERRED")

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        conn = self._conn
        conn.execute(begin)
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def close(self) -> None:
        """Close the connection (waits for a running transaction)."""
        async with self._lock:
            await anyio.to_thread.run_sync(self._conn.close)
