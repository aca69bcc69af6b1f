"""The embedded store: one SQLite file, stdlib :mod:`sqlite3`, no extra dependency.

``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path.sqlite3``; query options:

- ``synchronous=FULL`` (the default) or ``NORMAL``. The file is in WAL mode. With ``FULL``
  every COMMIT fsyncs the write-ahead log: a committed transaction survives a power loss. With
  ``NORMAL`` the WAL is fsynced only at checkpoints: a commit survives the process being
  killed (``kill -9``) but the last transactions before a power loss or kernel crash may be
  lost. Group commit makes ``FULL`` cheap (one fsync per batch), so it stays the default.
- ``busy_timeout`` (milliseconds, default 5000): how long a batch waits for the write lock when
  another process of the same host is writing the same file.

Statements run on the event loop's thread: they touch pages in memory and take microseconds,
less than a hop to a worker thread. What may block for long runs in a worker thread: opening the
file, ``BEGIN IMMEDIATE`` (waits for other processes' write lock) and ``COMMIT`` (the fsync).
A unit's application query that scans a large table therefore blocks the event loop while it
runs; keep such queries indexed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from ..exceptions import (
    ConfigurationError,
    StoreConflictError,
    StoreError,
    StoreIntegrityError,
    StoreQueryError,
    StoreUnavailableError,
)
from ._engine import BatchingStore, Connection, Dialect
from ._protocol import Row
from ._url import split_options

__all__ = ("SqliteStore",)

_OPTIONS = frozenset({"synchronous", "busy_timeout"})
_UNAVAILABLE = ("disk i/o error", "unable to open", "malformed", "readonly", "disk is full")
_BUSY = ("database is locked", "database table is locked", "busy")


def _translate(url: str, sql: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreIntegrityError(url, sql, text)
    if any(marker in lowered for marker in _BUSY):
        return StoreConflictError(url, sql, text)
    if any(marker in lowered for marker in _UNAVAILABLE):
        return StoreUnavailableError(url, text)
    return StoreQueryError(url, sql, text)


class _SqliteConnection(Connection):
    __slots__ = ("_cause", "_db", "_url")

    def __init__(self, db: sqlite3.Connection, url: str) -> None:
        self._db = db
        self._url = url
        self._cause = ""  # the last failed statement's error, for a batch SQLite rolled back

    def _error(self, sql: str, exc: sqlite3.Error) -> StoreError:
        self._cause = str(exc)
        return _translate(self._url, sql, exc)

    def _run(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise self._error(sql, exc) from exc

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        return max(self._run(sql, args).rowcount, 0)

    async def fetchall(self, sql: str, args: Sequence[Any]) -> list[Row]:
        cursor = self._run(sql, args)
        try:
            rows: list[Row] = cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._error(sql, exc) from exc
        return rows

    async def fetchone(self, sql: str, args: Sequence[Any]) -> Row | None:
        cursor = self._run(sql, args)
        try:
            row: Row | None = cursor.fetchone()
            cursor.close()  # finish the statement (a RETURNING statement runs to its end)
        except sqlite3.Error as exc:
            raise self._error(sql, exc) from exc
        return row

    async def fetchval(self, sql: str, args: Sequence[Any]) -> Any:
        row = await self.fetchone(sql, args)
        return None if row is None else row[0]

    async def _in_thread(self, sql: str) -> None:
        try:
            await anyio.to_thread.run_sync(self._db.execute, sql)
        except sqlite3.Error as exc:
            raise _translate(self._url, sql, exc) from exc

    async def begin(self) -> None:
        # IMMEDIATE takes the write lock now (waiting up to busy_timeout, in a thread), so no
        # statement of the batch can fail later on a lock held by another process.
        await self._in_thread("BEGIN IMMEDIATE")
        self._run("SAVEPOINT actorbus_unit", ())

    def _check_not_rolled_back(self) -> None:
        # On SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM (and some SQLITE_BUSY) SQLite may roll the
        # whole transaction back by itself: the savepoints are gone with every unit's work.
        if not self._db.in_transaction:
            cause = self._cause or "a statement failed"
            raise StoreUnavailableError(
                self._url,
                f"{cause}; SQLite rolled the whole transaction back, nothing of this batch "
                "was committed",
            )

    async def next_savepoint(self, previous_failed: bool) -> None:
        self._check_not_rolled_back()
        if previous_failed:
            self._run("ROLLBACK TO SAVEPOINT actorbus_unit", ())
        self._run("RELEASE SAVEPOINT actorbus_unit", ())
        self._run("SAVEPOINT actorbus_unit", ())

    async def commit(self, last_failed: bool) -> None:
        self._check_not_rolled_back()
        if last_failed:
            self._run("ROLLBACK TO SAVEPOINT actorbus_unit", ())
        self._run("RELEASE SAVEPOINT actorbus_unit", ())
        await self._in_thread("COMMIT")  # the fsync

    async def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")


class SqliteStore(BatchingStore):
    """A store in one SQLite file (WAL mode), shared by the processes of one host.

    Args:
        url: ``sqlite:///path/file.sqlite3`` (relative) or ``sqlite:////abs/file.sqlite3``,
            with the optional query options of this module's docstring.
        **options: ``max_batch``, ``inbox_window``, ``sent_window``
            (see :class:`~actorbus.stores._engine.BatchingStore`).

    Raises:
        ConfigurationError: The URL names no file, or an option is invalid.
    """

    dialect = Dialect()

    def __init__(self, url: str, **options: Any) -> None:
        options.pop("lanes", None)  # one writer per SQLite file: more lanes would only wait
        super().__init__(url, lanes=1, **options)
        plain, ours = split_options(url, _OPTIONS)
        if not plain.lower().startswith("sqlite:///"):
            raise ConfigurationError(
                f"SQLite store URL {self.url!r} must look like sqlite:///relative/file.sqlite3 "
                "or sqlite:////absolute/file.sqlite3"
            )
        path = plain[len("sqlite:///") :].partition("?")[0]
        if not path or path.endswith("/"):
            raise ConfigurationError(
                f"SQLite store URL {self.url!r} names no file; use sqlite:///path/to/file.sqlite3"
            )
        self.path = Path(path)
        synchronous = ours.get("synchronous", "FULL").upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigurationError(
                f"SQLite store URL {self.url!r}: synchronous={synchronous!r} is not supported; "
                "use FULL (durable against power loss) or NORMAL (durable against a crash of "
                "the process only)"
            )
        self.synchronous = synchronous
        try:
            self.busy_timeout = int(ours.get("busy_timeout", "5000"))
        except ValueError:
            raise ConfigurationError(
                f"SQLite store URL {self.url!r}: busy_timeout must be milliseconds, "
                f"got {ours['busy_timeout']!r}"
            ) from None
        self._db: sqlite3.Connection | None = None
        self._ping_db: sqlite3.Connection | None = None
        self._ping_lock = anyio.Lock()

    def _open_file(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path,
            isolation_level=None,  # we issue BEGIN / SAVEPOINT / COMMIT ourselves
            check_same_thread=False,  # BEGIN and COMMIT run in a worker thread
            cached_statements=256,
        )
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {self.busy_timeout}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    async def _connect(self) -> None:
        try:
            self._db = await anyio.to_thread.run_sync(self._open_file)
            self._ping_db = await anyio.to_thread.run_sync(self._open_file)
        except (sqlite3.Error, OSError) as exc:
            await self._disconnect()
            raise StoreUnavailableError(self.url, f"cannot open {str(self.path)!r}: {exc}") from exc

    async def _disconnect(self) -> None:
        for db in (self._db, self._ping_db):
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        self._db = self._ping_db = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._db is None:
            raise StoreUnavailableError(self.url, "the file is not open")
        yield _SqliteConnection(self._db, self.url)

    async def ping(self) -> None:
        """Check that the file can be read (``SELECT`` on a second connection).

        Raises:
            StoreUnavailableError: It cannot, or the store is not open.
        """
        db = self._ping_db
        if db is None:
            raise StoreUnavailableError(self.url, "the store is not open")
        async with self._ping_lock:
            try:
                await anyio.to_thread.run_sync(
                    lambda: db.execute("SELECT COUNT(*) FROM actorbus_schema").fetchone()
                )
            except sqlite3.Error as exc:
                raise StoreUnavailableError(self.url, str(exc)) from exc
