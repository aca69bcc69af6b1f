"""The shared store: PostgreSQL through asyncpg, with a connection pool.

``postgresql://user:password@host:port/database`` (or ``postgres://``); query options taken by
actorbus (the others go to asyncpg, e.g. ``sslmode``):

- ``schema``: the PostgreSQL schema holding the tables (created if missing; default: the
  database's ``search_path``, normally ``public``). Several services can share one database,
  each in its own schema.
- ``lanes`` (default 1): batches open at once, each on its own connection. One lane gives the
  largest batches and a strict order of units; more lanes overlap one batch's COMMIT with the
  next batch's work at the price of smaller batches and of row locks held across lanes.
- ``pool_max`` (default ``lanes + 1``): connections in the pool (lanes, ``ping``, migrations).
- ``connect_timeout`` (seconds, default 10) and ``command_timeout`` (seconds, default 60).

Why asyncpg rather than psycopg 3: it is the fastest PostgreSQL driver for asyncio (binary
protocol, prepared statements cached per connection, no per-row Python objects beyond its C
``Record``), ships its own pool, and a simple-query ``execute`` without arguments sends several
statements in one round trip, which the group commit uses for ``RELEASE SAVEPOINT; SAVEPOINT``
between units. psycopg 3 would also work (and runs on trio); it was not needed.
asyncpg is asyncio-only: on another anyio backend this store refuses to open.

Several processes (on any number of hosts) may share one database: claims of the outbox use
``FOR UPDATE SKIP LOCKED``, an inbox claim of an id that another process has claimed but not yet
committed waits for that transaction, and migrations take an advisory lock.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio

from ..exceptions import (
    ConfigurationError,
    StoreConflictError,
    StoreError,
    StoreImportError,
    StoreIntegrityError,
    StoreQueryError,
    StoreUnavailableError,
)
from ._engine import BatchingStore, Connection, Dialect
from ._protocol import Row
from ._sql import to_numbered
from ._url import split_options

try:
    import asyncpg
    import asyncpg.exceptions as pgerr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise StoreImportError(
        "postgresql",
        "actorbus.stores.postgresql:PostgresStore",
        str(exc),
        "install the driver with: pip install 'actorbus[postgres]'",
    ) from exc

__all__ = ("PostgresStore",)

_OPTIONS = frozenset({"schema", "lanes", "pool_max", "connect_timeout", "command_timeout"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SAVEPOINT = "SAVEPOINT actorbus_unit"
_RELEASE = "RELEASE SAVEPOINT actorbus_unit"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT actorbus_unit"

# SQLSTATEs: the connection is gone or the server refuses work for now.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pgerr.PostgresConnectionError,  # class 08
    pgerr.AdminShutdownError,  # 57P01
    pgerr.CrashShutdownError,  # 57P02
    pgerr.CannotConnectNowError,  # 57P03
    pgerr.TooManyConnectionsError,  # 53300
    OSError,
    TimeoutError,
)
_CONFLICT: tuple[type[BaseException], ...] = (
    pgerr.SerializationError,  # 40001
    pgerr.DeadlockDetectedError,  # 40P01
)


def _translate(url: str, sql: str, exc: BaseException, closed: bool) -> StoreError:
    """Map an asyncpg (or socket) error to the store's exceptions: the one table."""
    if isinstance(exc, _CONFLICT):
        return StoreConflictError(url, sql, str(exc))
    if isinstance(exc, pgerr.IntegrityConstraintViolationError):
        return StoreIntegrityError(url, sql, str(exc))
    if isinstance(exc, _UNAVAILABLE) or closed:
        return StoreUnavailableError(url, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return StoreQueryError(url, sql, str(exc))


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0", "CREATE TABLE".
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class _PgDialect(Dialect):
    claim_lock: ClassVar[str] = "FOR UPDATE SKIP LOCKED"
    row_identity: ClassVar[str] = "ctid"
    schema_table: ClassVar[str] = (
        "CREATE TABLE IF NOT EXISTS actorbus_schema ("
        " namespace TEXT PRIMARY KEY,"
        " version INTEGER NOT NULL,"
        " updated_at DOUBLE PRECISION NOT NULL)"
    )
    core_steps: ClassVar[tuple[str, ...]] = (
        """
        CREATE TABLE actorbus_inbox (
            consumer TEXT NOT NULL,
            message_id TEXT NOT NULL,
            processed_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (consumer, message_id)
        );
        -- pruning deletes by age
        CREATE INDEX actorbus_inbox_processed_at ON actorbus_inbox (processed_at);
        CREATE TABLE actorbus_outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            exchange TEXT NOT NULL,
            envelope BYTEA NOT NULL,
            body BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            available_at DOUBLE PRECISION NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            sent_at DOUBLE PRECISION,
            last_error TEXT
        );
        -- claiming scans unsent rows in id order; sent rows drop out of this index
        CREATE INDEX actorbus_outbox_unsent ON actorbus_outbox (id) WHERE sent_at IS NULL;
        -- pruning deletes sent rows by age
        CREATE INDEX actorbus_outbox_sent ON actorbus_outbox (sent_at) WHERE sent_at IS NOT NULL
        """,
    )

    def migration_lock(self) -> str | None:
        # One lock per schema: processes migrating different schemas do not wait for each other.
        return (
            "SELECT pg_advisory_xact_lock(hashtext('actorbus_schema:' "
            "|| coalesce(current_schema(), '')))"
        )


class _PgConnection(Connection):
    __slots__ = ("_conn", "_url")

    def __init__(self, conn: Any, url: str) -> None:
        self._conn = conn
        self._url = url

    def closed(self) -> bool:
        # After the server drops the connection, asyncpg's pool detaches the proxy we hold, and
        # every call on it (is_closed() included) raises InterfaceError.
        try:
            return bool(self._conn.is_closed())
        except pgerr.InterfaceError:
            return True

    def _error(self, sql: str, exc: BaseException) -> StoreError:
        return _translate(self._url, sql, exc, self.closed())

    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        try:
            status: str = await self._conn.execute(to_numbered(sql), *args)
        except Exception as exc:
            raise self._error(sql, exc) from exc
        return _rowcount(status)

    async def fetchall(self, sql: str, args: Sequence[Any]) -> list[Row]:
        try:
            rows: list[Row] = await self._conn.fetch(to_numbered(sql), *args)
        except Exception as exc:
            raise self._error(sql, exc) from exc
        return rows

    async def fetchone(self, sql: str, args: Sequence[Any]) -> Row | None:
        try:
            row: Row | None = await self._conn.fetchrow(to_numbered(sql), *args)
        except Exception as exc:
            raise self._error(sql, exc) from exc
        return row

    async def fetchval(self, sql: str, args: Sequence[Any]) -> Any:
        try:
            return await self._conn.fetchval(to_numbered(sql), *args)
        except Exception as exc:
            raise self._error(sql, exc) from exc

    async def _script(self, sql: str) -> None:
        # No arguments: the simple query protocol, several statements in one round trip.
        try:
            await self._conn.execute(sql)
        except Exception as exc:
            raise self._error(sql, exc) from exc

    async def begin(self) -> None:
        await self._script(f"BEGIN; {_SAVEPOINT}")

    async def next_savepoint(self, previous_failed: bool) -> None:
        if previous_failed:
            await self._script(f"{_ROLLBACK_TO}; {_RELEASE}; {_SAVEPOINT}")
        else:
            await self._script(f"{_RELEASE}; {_SAVEPOINT}")

    async def commit(self, last_failed: bool) -> None:
        if last_failed:
            await self._script(_ROLLBACK_TO)
        await self._script("COMMIT")  # releases the savepoint; the fsync

    async def rollback(self) -> None:
        if self.closed():
            return
        try:
            with anyio.move_on_after(5):
                await self._conn.execute("ROLLBACK")
        except Exception:
            pass  # the pool resets or discards the connection


class PostgresStore(BatchingStore):
    """A store in a PostgreSQL database, shared by every process of a service on any host.

    Args:
        url: ``postgresql://user:password@host:port/database`` with the optional query options
            of this module's docstring.
        **options: ``max_batch``, ``inbox_window``, ``sent_window``, ``lanes``
            (see :class:`~actorbus.stores._engine.BatchingStore`).

    Raises:
        ConfigurationError: An option is invalid.
    """

    dialect = _PgDialect()

    def __init__(self, url: str, **options: Any) -> None:
        dsn, ours = split_options(url, _OPTIONS)
        try:
            lanes = int(options.pop("lanes", ours.get("lanes", 1)))
            pool_max = int(ours.get("pool_max", lanes + 1))
            self.connect_timeout = float(ours.get("connect_timeout", 10))
            self.command_timeout = float(ours.get("command_timeout", 60))
        except ValueError as exc:
            raise ConfigurationError(
                f"PostgreSQL store URL: a numeric option is not a number ({exc})"
            ) from None
        super().__init__(url, lanes=lanes, **options)
        schema = ours.get("schema")
        if schema is not None and not _IDENTIFIER.fullmatch(schema):
            raise ConfigurationError(
                f"PostgreSQL store URL {self.url!r}: schema={schema!r} is not a plain SQL "
                "identifier (letters, digits and _, not starting with a digit, at most 63)"
            )
        if pool_max < lanes:
            raise ConfigurationError(
                f"PostgreSQL store URL {self.url!r}: pool_max={pool_max} is smaller than "
                f"lanes={lanes}; every lane needs a connection"
            )
        self.schema = schema
        self.pool_max = pool_max
        self._dsn = dsn
        self._pool: Any = None

    async def _connect(self) -> None:
        settings = {"search_path": self.schema} if self.schema else None
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_max,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=settings,
            )
        except RuntimeError as exc:  # no asyncio event loop
            raise ConfigurationError(
                f"PostgreSQL store {self.url}: asyncpg runs only on anyio's asyncio backend ({exc})"
            ) from exc
        except Exception as exc:
            raise StoreUnavailableError(
                self.url, f"cannot connect: {type(exc).__name__}: {exc}"
            ) from exc
        self._pool = pool
        if self.schema:
            try:
                async with pool.acquire() as conn:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except (pgerr.UniqueViolationError, pgerr.DuplicateSchemaError):
                pass  # another process created it at the same time
            except Exception as exc:
                await self._disconnect()
                raise _translate(self.url, "CREATE SCHEMA", exc, False) from exc

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            with anyio.move_on_after(10) as scope:
                await pool.close()
            if scope.cancelled_caught:
                pool.terminate()
        except Exception:  # pragma: no cover - closing a broken pool
            pool.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError(self.url, "the store is not open")
        try:
            conn = await pool.acquire(timeout=self.connect_timeout)
        except Exception as exc:
            raise StoreUnavailableError(
                self.url, f"cannot connect: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            yield _PgConnection(conn, self.url)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await pool.release(conn, timeout=5)
                except Exception:
                    with contextlib.suppress(Exception):
                        conn.terminate()

    async def ping(self) -> None:
        """Check that the database answers ``SELECT 1`` on a pooled connection.

        Raises:
            StoreUnavailableError: It does not, or the store is not open.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError(self.url, "the store is not open")
        try:
            with anyio.fail_after(self.connect_timeout):
                async with pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except Exception as exc:
            raise StoreUnavailableError(self.url, f"{type(exc).__name__}: {exc}") from exc
