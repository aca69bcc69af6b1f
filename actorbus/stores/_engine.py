"""Group commit, written once for every SQL store.

How a batch runs (classic leader/follower group commit, no added linger):

- ``store.transaction()`` queues a *unit* and waits for its turn.
- A committer task (the "lane") takes the first queued unit, acquires a connection, runs
  ``BEGIN`` and ``SAVEPOINT``, and hands the connection to the unit: the unit's body runs in the
  caller's own task, with the batch's connection. When the body leaves, the lane releases the
  savepoint (or rolls back to it if the body raised) and takes the next queued unit, until the
  queue is empty or ``max_batch`` units ran. Then one ``COMMIT`` (one fsync) for all of them.
- Units that arrive while a COMMIT is in flight wait in the queue and form the next batch, so
  the batch size adapts to the load: 1 when idle, many under concurrency.
- A unit whose body raised was rolled back to its savepoint alone; its error propagates to its
  caller, the others commit. A failed COMMIT (or a lost connection) fails every unit of its batch.

Backends implement :class:`Connection` (a connection adapter with the savepoint steps) and the
few abstract methods of :class:`BatchingStore`; the inbox, outbox, relay, migrations and
pruning are shared and use :class:`Dialect` for the few SQL differences.
"""

from __future__ import annotations

import abc
import contextvars
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskGroup

from .._log import get_logger
from ..exceptions import (
    InboxKeyError,
    StoreClosedError,
    StoreConflictError,
    StoreError,
    StoreSchemaError,
    StoreUsageError,
)
from ..messages import Envelope
from ._protocol import (
    DEFAULT_INBOX_WINDOW,
    DEFAULT_SENT_WINDOW,
    MigrationStep,
    OutboxRow,
    PruneResult,
    Row,
    StoreStats,
)
from ._sql import split_statements
from ._url import redact

if TYPE_CHECKING:
    from typing import Self

__all__ = ("CORE_NAMESPACE", "BatchingStore", "Connection", "Dialect")

T = TypeVar("T")

_log = get_logger("actorbus.stores")

#: The namespace of actorbus's own tables in ``actorbus_schema``.
CORE_NAMESPACE = "actorbus"

#: Rows deleted per prune statement: bounded transactions on a large backlog.
_PRUNE_CHUNK = 5000
#: Ids per ``IN (...)`` list.
_ID_CHUNK = 500

_current_unit: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
    "actorbus_store_unit", default=None
)


def _encode_hook(obj: object) -> object:
    # Envelope.headers defaults to a read-only mappingproxy, which msgpack does not encode.
    if isinstance(obj, Mapping):
        return dict(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


# msgpack, not JSON: header values may be bytes (AMQP field tables), and JSON would return
# them as base64 text. One encoder and one typed decoder, reused.
_envelope_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_hook)
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)


class Connection(abc.ABC):
    """One database connection during one batch: statements, and the batch's steps.

    Every method translates driver errors into :mod:`actorbus.exceptions` (``StoreQueryError``,
    ``StoreIntegrityError``, ``StoreConflictError``, ``StoreUnavailableError``).
    """

    @abc.abstractmethod
    async def execute(self, sql: str, args: Sequence[Any]) -> int:
        """Run one statement with ``?`` placeholders; return the rows it changed."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, args: Sequence[Any]) -> list[Row]:
        """Run a query; return its rows."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, args: Sequence[Any]) -> Row | None:
        """Run a query; return its first row."""

    @abc.abstractmethod
    async def fetchval(self, sql: str, args: Sequence[Any]) -> Any:
        """Run a query; return the first column of its first row."""

    @abc.abstractmethod
    async def begin(self) -> None:
        """Begin the batch's transaction and set the first unit's savepoint."""

    @abc.abstractmethod
    async def next_savepoint(self, previous_failed: bool) -> None:
        """Settle the previous unit (release, or roll back to, its savepoint); set a new one."""

    @abc.abstractmethod
    async def commit(self, last_failed: bool) -> None:
        """Settle the last unit and commit the batch."""

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Roll the batch back; never raises (the connection may be gone)."""


class Dialect:
    """The SQL that differs between databases; the defaults are SQLite's."""

    #: Placed after the claim's sub-select (PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
    claim_lock: ClassVar[str] = ""
    #: Selects a prunable row's physical identity (SQLite ``rowid``, PostgreSQL ``ctid``).
    row_identity: ClassVar[str] = "rowid"
    schema_table: ClassVar[str] = (
        "CREATE TABLE IF NOT EXISTS actorbus_schema ("
        " namespace TEXT PRIMARY KEY,"
        " version INTEGER NOT NULL,"
        " updated_at REAL NOT NULL)"
    )
    #: The core schema's migrations; the version is the number of steps.
    core_steps: ClassVar[tuple[str, ...]] = (
        """
        CREATE TABLE actorbus_inbox (
            consumer TEXT NOT NULL,
            message_id TEXT NOT NULL,
            processed_at REAL NOT NULL,
            PRIMARY KEY (consumer, message_id)
        );
        -- pruning deletes by age
        CREATE INDEX actorbus_inbox_processed_at ON actorbus_inbox (processed_at);
        CREATE TABLE actorbus_outbox (
            -- AUTOINCREMENT: an id is never reused after pruning, so ids keep insert order
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            exchange TEXT NOT NULL,
            envelope BLOB NOT NULL,
            body BLOB NOT NULL,
            created_at REAL NOT NULL,
            available_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            lease_until REAL,
            sent_at REAL,
            last_error TEXT
        );
        -- claiming scans unsent rows in id order; sent rows drop out of this index
        CREATE INDEX actorbus_outbox_unsent ON actorbus_outbox (id) WHERE sent_at IS NULL;
        -- pruning deletes sent rows by age
        CREATE INDEX actorbus_outbox_sent ON actorbus_outbox (sent_at) WHERE sent_at IS NOT NULL
        """,
    )

    def in_ids(self, count: int) -> str:
        """Return a ``?`` placeholder list for ``count`` ids: ``(?, ?, ?)``."""
        return "(" + ", ".join("?" * count) + ")"

    def migration_lock(self) -> str | None:
        """Return a statement that serialises migrations across processes, if one is needed."""
        return None


class _Unit:
    """One caller's unit of work, as the lane sees it."""

    __slots__ = (
        "abandoned",
        "body_error",
        "committed",
        "done",
        "error",
        "outcome",
        "store",
        "turn",
        "tx",
        "wrote_outbox",
    )

    def __init__(self, store: BatchingStore) -> None:
        self.store = store
        self.turn = anyio.Event()
        self.done = anyio.Event()
        self.committed = anyio.Event()
        self.tx: _Tx | None = None
        self.error: BaseException | None = None  # failed before or after its body
        self.body_error: BaseException | None = None
        self.outcome: BaseException | None = None  # the batch's failure, if it failed
        self.abandoned = False
        self.wrote_outbox = False

    @property
    def failed(self) -> bool:
        return self.body_error is not None or (self.tx is not None and self.tx.poisoned)

    def grant(self, tx: _Tx) -> None:
        self.tx = tx
        if self.done.is_set():  # abandoned after the lane took it: nothing will use the tx
            tx.close()
        self.turn.set()

    def fail_early(self, error: BaseException) -> None:
        """Fail a unit that never got its turn (the batch could not begin)."""
        self.error = error
        self.outcome = error
        self.turn.set()
        self.committed.set()

    def finish(self, error: BaseException | None) -> None:
        """Called from the caller's task when its body left."""
        self.body_error = error
        if self.tx is not None:
            self.tx.close()
        self.done.set()

    def settle(self, outcome: BaseException | None) -> None:
        self.outcome = outcome
        self.committed.set()


class _TxInbox:
    __slots__ = ("_tx",)

    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def claim(self, consumer: str, message_id: str) -> bool:
        if not message_id or not consumer or not isinstance(message_id, str):
            raise InboxKeyError(consumer, message_id)
        changed = await self._tx.execute(
            "INSERT INTO actorbus_inbox (consumer, message_id, processed_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            consumer,
            message_id,
            time.time(),
        )
        return changed == 1


class _TxOutbox:
    __slots__ = ("_tx",)

    def __init__(self, tx: _Tx) -> None:
        self._tx = tx

    async def add(
        self, exchange: str, envelope: Envelope, body: bytes, *, delay: float = 0.0
    ) -> None:
        now = time.time()
        await self._tx.execute(
            "INSERT INTO actorbus_outbox (exchange, envelope, body, created_at, available_at) "
            "VALUES (?, ?, ?, ?, ?)",
            exchange,
            _envelope_encoder.encode(envelope),
            bytes(body),
            now,
            now + delay,
        )
        self._tx.unit.wrote_outbox = True


class _Tx:
    """The ``tx`` a unit's body gets (satisfies :class:`~actorbus.stores.Transaction`)."""

    __slots__ = ("_conn", "_inbox", "_outbox", "poisoned", "unit")

    def __init__(self, conn: Connection, unit: _Unit) -> None:
        self._conn: Connection | None = conn
        self.unit = unit
        self.poisoned = False  # a statement failed: the unit is rolled back even if caught
        self._inbox = _TxInbox(self)
        self._outbox = _TxOutbox(self)

    @property
    def inbox(self) -> _TxInbox:
        return self._inbox

    @property
    def outbox(self) -> _TxOutbox:
        return self._outbox

    def close(self) -> None:
        self._conn = None

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise StoreClosedError("this transaction")
        return conn

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            return await self._connection().execute(sql, args)
        except StoreError:
            self.poisoned = True
            raise

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        try:
            return await self._connection().fetchone(sql, args)
        except StoreError:
            self.poisoned = True
            raise

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        try:
            return await self._connection().fetchall(sql, args)
        except StoreError:
            self.poisoned = True
            raise

    async def fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._connection().fetchval(sql, args)
        except StoreError:
            self.poisoned = True
            raise

    async def wait_committed(self) -> None:
        await self.unit.store._wait_committed(self.unit)


class _TransactionContext:
    """``async with store.transaction() as tx``: one unit of the next group commit."""

    __slots__ = ("_store", "_token", "_unit", "_wait")

    def __init__(self, store: BatchingStore, wait: bool) -> None:
        self._store = store
        self._wait = wait
        self._unit: _Unit | None = None
        self._token: contextvars.Token[_Unit | None] | None = None

    async def __aenter__(self) -> _Tx:
        store = self._store
        store._check_accepting()
        current = _current_unit.get()
        if current is not None and current.store is store:
            raise StoreUsageError(
                f"store {store.url}: a transaction was opened inside another transaction's "
                "body; units run in turn, so it would wait forever. Use the outer 'tx'"
            )
        unit = _Unit(store)
        self._unit = unit
        store._enqueue(unit)
        try:
            await unit.turn.wait()
        except BaseException as exc:
            # Cancelled while queued, or while a lane had already taken the unit and was
            # setting its savepoint: either way its body never runs. Mark it done, so that a
            # lane that grants it after all rolls its (empty) savepoint back and moves on
            # instead of waiting for a body that will not come.
            unit.abandoned = True
            unit.finish(exc)
            raise
        if unit.error is not None:
            raise unit.error
        if unit.tx is None:  # pragma: no cover - a granted unit always has its tx
            raise StoreUsageError("internal error: a unit got its turn without a transaction")
        self._token = _current_unit.set(unit)
        return unit.tx

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        unit = self._unit
        if unit is None or unit.tx is None:  # pragma: no cover - __aenter__ raised
            return
        if self._token is not None:
            _current_unit.reset(self._token)
            self._token = None
        poisoned = unit.tx.poisoned
        unit.finish(exc)
        if exc is not None:
            return  # rolled back to its savepoint; the error propagates to the caller
        if poisoned:
            raise StoreUsageError(
                f"store {self._store.url}: a statement of this transaction failed and its error "
                "was caught inside the block; the whole unit was rolled back. Let the error "
                "propagate, or avoid it in SQL (INSERT ... ON CONFLICT DO NOTHING)"
            )
        if self._wait:
            await self._store._wait_committed(unit)


class _Relay:
    """``store.outbox``: the relay's side (satisfies :class:`~actorbus.stores.OutboxRelay`)."""

    __slots__ = ("_store",)

    def __init__(self, store: BatchingStore) -> None:
        self._store = store

    async def claim(
        self, owner: str, limit: int = 100, lease: float = 30.0, *, now: float | None = None
    ) -> list[OutboxRow]:
        if limit < 1:
            raise ValueError(f"outbox claim limit must be at least 1, got {limit!r}")
        at = time.time() if now is None else now
        dialect = self._store.dialect
        sql = (
            "UPDATE actorbus_outbox SET owner = ?, lease_until = ?, attempts = attempts + 1 "
            "WHERE id IN (SELECT id FROM actorbus_outbox WHERE sent_at IS NULL "
            "AND available_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
            f"ORDER BY id LIMIT ? {dialect.claim_lock}) "
            "RETURNING id, exchange, envelope, body, attempts"
        )

        async def claim(tx: _Tx) -> list[Row]:
            return await tx.fetchall(sql, owner, at + lease, at, at, limit)

        rows = await self._store.run(claim)
        claimed = [
            OutboxRow(
                id=row[0],
                exchange=row[1],
                envelope=_envelope_decoder.decode(row[2]),
                body=bytes(row[3]),
                attempts=row[4],
            )
            for row in rows
        ]
        claimed.sort(key=lambda r: r.id)  # RETURNING does not promise an order
        return claimed

    async def _update_ids(self, set_sql: str, params: Sequence[Any], ids: Sequence[int]) -> None:
        ids = list(ids)
        if not ids:
            return

        async def update(tx: _Tx) -> None:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                await tx.execute(
                    f"UPDATE actorbus_outbox SET {set_sql} "
                    f"WHERE id IN {self._store.dialect.in_ids(len(chunk))}",
                    *params,
                    *chunk,
                )

        await self._store.run(update)

    async def mark_sent(self, ids: Sequence[int], *, now: float | None = None) -> None:
        at = time.time() if now is None else now
        await self._update_ids("sent_at = ?, owner = NULL, lease_until = NULL", (at,), ids)

    async def release(
        self,
        ids: Sequence[int],
        *,
        delay: float = 0.0,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        at = time.time() if now is None else now
        await self._update_ids(
            "owner = NULL, lease_until = NULL, available_at = ?, last_error = ?",
            (at + delay, error),
            ids,
        )

    async def leases(self, *, now: float | None = None) -> dict[str, int]:
        at = time.time() if now is None else now

        async def leases(tx: _Tx) -> list[Row]:
            return await tx.fetchall(
                "SELECT owner, COUNT(*) FROM actorbus_outbox WHERE sent_at IS NULL "
                "AND lease_until > ? GROUP BY owner",
                at,
            )

        return {row[0]: int(row[1]) for row in await self._store.run(leases)}

    async def expire(self, owner: str) -> int:
        async def expire(tx: _Tx) -> list[Row]:
            return await tx.fetchall(
                "UPDATE actorbus_outbox SET owner = NULL, lease_until = NULL "
                "WHERE owner = ? AND sent_at IS NULL RETURNING id",
                owner,
            )

        return len(await self._store.run(expire))

    async def wait(self, timeout: float | None = None) -> bool:
        store = self._store
        if not store._outbox_flag:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await store._outbox_event.wait()
        woken = store._outbox_flag
        store._outbox_flag = False
        if store._outbox_event.is_set():
            store._outbox_event = anyio.Event()
        return woken

    async def pending(self) -> int:
        async def count(tx: _Tx) -> int:
            value = await tx.fetchval("SELECT COUNT(*) FROM actorbus_outbox WHERE sent_at IS NULL")
            return int(value)

        return await self._store.run(count)


class BatchingStore(abc.ABC):
    """The shared implementation of a SQL store with group commit.

    Args:
        url: The store URL (kept only in redacted form).
        max_batch: The most units one COMMIT carries.
        inbox_window: Seconds an inbox record is kept (see ``DEFAULT_INBOX_WINDOW``).
        sent_window: Seconds a sent outbox row is kept (see ``DEFAULT_SENT_WINDOW``).
        lanes: How many batches may be open at once (each on its own connection).
    """

    dialect: ClassVar[Dialect] = Dialect()

    def __init__(
        self,
        url: str,
        *,
        max_batch: int = 128,
        inbox_window: float = DEFAULT_INBOX_WINDOW,
        sent_window: float = DEFAULT_SENT_WINDOW,
        lanes: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch!r}")
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes!r}")
        self._url = redact(url)
        self.max_batch = max_batch
        self.inbox_window = float(inbox_window)
        self.sent_window = float(sent_window)
        self._lanes = lanes
        self._queue: deque[_Unit] = deque()
        self._queued = anyio.Event()
        self._busy_lanes = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._task_group: TaskGroup | None = None
        self._open = False
        self._closing = False
        self._outbox_event = anyio.Event()
        self._outbox_flag = False
        self._relay = _Relay(self)
        self._stats = {
            "units": 0,
            "rolled_back": 0,
            "failed": 0,
            "batches": 0,
            "commits": 0,
            "largest_batch": 0,
        }

    # --------------------------------------------------------------- backend hooks

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Open the backend (pool, file); raise ``StoreUnavailableError`` if it cannot."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the backend; never raises."""

    @abc.abstractmethod
    def _connection(self) -> AbstractAsyncContextManager[Connection]:
        """Return a context manager lending a connection for one batch."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Check that the database answers.

        Raises:
            StoreUnavailableError: It does not.
        """

    # --------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The store's URL with its password masked."""
        return self._url

    @property
    def outbox(self) -> _Relay:
        """The relay's side of the outbox (claim, mark_sent, release, wait, pending)."""
        return self._relay

    async def __aenter__(self) -> Self:
        """Connect, create the schema, apply the core migrations.

        Raises:
            StoreUnavailableError: The database cannot be reached.
            StoreSchemaError: The database's schema is newer than this code.
        """
        if self._open:
            raise StoreUsageError(f"store {self.url} is already open")
        await self._connect()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._open = True
        self._closing = False
        try:
            for _ in range(self._lanes):
                await task_group.start(self._lane)
            await self.migrate(CORE_NAMESPACE, self.dialect.core_steps)
        except BaseException as exc:
            await self._shutdown(exc)
            raise
        _log.info("store_opened", url=self.url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Let queued and running units finish, then close the connections."""
        exc = exc_info[1] if len(exc_info) > 1 else None
        await self._shutdown(exc if isinstance(exc, BaseException) else None)

    async def _shutdown(self, exc: BaseException | None) -> None:
        if not self._open:
            return
        self._closing = True
        task_group = self._task_group
        try:
            with anyio.CancelScope(shield=True):
                if exc is None:
                    with anyio.move_on_after(30):
                        while self._queue or self._busy_lanes:
                            await self._idle.wait()
                            if self._queue:
                                await anyio.lowlevel.checkpoint()
                for unit in self._queue:
                    unit.fail_early(StoreClosedError(f"store {self.url}"))
                self._queue.clear()
                # Batches already under way finish (their units' bodies have run or are
                # leaving): cancelling them would fail units that are done, for nothing.
                with anyio.move_on_after(5):
                    while self._busy_lanes:
                        await self._idle.wait()
            if task_group is not None:
                # Exited outside the shield: a task group must be left from its own scope.
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
        finally:
            self._task_group = None
            self._open = False
            with anyio.CancelScope(shield=True):
                await self._disconnect()
        _log.info("store_closed", url=self.url)

    def _check_accepting(self) -> None:
        if not self._open or self._closing:
            raise StoreClosedError(f"store {self.url}")

    # --------------------------------------------------------------- units

    def transaction(self, *, wait: bool = True) -> _TransactionContext:
        """Return a context manager running its body as one unit of a group commit.

        The body runs in the caller's task, in turn with the other units of its batch, on the
        batch's connection: keep it to database work (no network calls, no long awaits), since
        the batch waits for it. If it raises, only this unit is rolled back (to its savepoint)
        and the error propagates; the other units of the batch commit.

        Args:
            wait: If ``True`` (the default), leaving the block waits for the batch's COMMIT
                and raises if it failed. If ``False``, leaving returns once the unit's work is
                done, so a sequential consumer can go on to its next delivery (and share the
                COMMIT with it); call ``await tx.wait_committed()`` before acking.

        Raises:
            StoreClosedError: The store is not open.
            StoreUsageError: Opened inside another transaction's body of the same store.
            StoreUnavailableError: The batch could not begin, or its connection was lost.
        """
        return _TransactionContext(self, wait)

    async def run(self, fn: Callable[[_Tx], Awaitable[T]], *, attempts: int = 5) -> T:
        """Run ``fn(tx)`` as one unit, wait for its COMMIT, and re-run it on a conflict.

        Args:
            fn: The unit of work. It may run more than once (after a serialization failure or
                a deadlock), so it must do nothing outside the transaction that cannot repeat.
            attempts: How many times to try on ``StoreConflictError``.

        Returns:
            What ``fn`` returned in the attempt that committed.

        Raises:
            StoreConflictError: Every attempt conflicted.
        """
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as tx:
                    result = await fn(tx)
            except StoreConflictError:
                if attempt >= attempts:
                    raise
                # Jittered backoff so that two conflicting units do not collide again.
                await anyio.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _enqueue(self, unit: _Unit) -> None:
        self._queue.append(unit)
        self._queued.set()

    def _requeue(self, unit: _Unit) -> None:
        self._queue.appendleft(unit)
        self._queued.set()

    def _pop(self) -> _Unit | None:
        queue = self._queue
        while queue:
            unit = queue.popleft()
            if not unit.abandoned:
                return unit
        return None

    async def _wait_committed(self, unit: _Unit) -> None:
        current = _current_unit.get()
        if current is not None and current.store is self and not unit.committed.is_set():
            raise StoreUsageError(
                f"store {self.url}: wait_committed() inside a transaction body would wait for "
                "its own batch; call it after the 'async with' block"
            )
        await unit.committed.wait()
        if unit.outcome is not None:
            raise unit.outcome

    async def _lane(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            if not self._queue:
                if self._queued.is_set():
                    self._queued = anyio.Event()
                await self._queued.wait()
                continue
            self._busy_lanes += 1
            if self._idle.is_set():
                self._idle = anyio.Event()
            try:
                await self._run_batch()
            finally:
                self._busy_lanes -= 1
                if not self._busy_lanes and not self._queue:
                    self._idle.set()

    async def _run_batch(self) -> None:
        first = self._pop()
        if first is None:
            return
        batch: list[_Unit] = []
        self._stats["batches"] += 1
        try:
            async with self._connection() as conn:
                try:
                    await conn.begin()
                    unit: _Unit | None = first
                    while unit is not None:
                        if batch:
                            try:
                                await conn.next_savepoint(batch[-1].failed)
                            except BaseException:
                                # Taken from the queue but never started: the next batch
                                # runs it (else it would wait for its turn forever).
                                self._requeue(unit)
                                raise
                        batch.append(unit)
                        unit.grant(_Tx(conn, unit))
                        await unit.done.wait()
                        if len(batch) >= self.max_batch:
                            break
                        unit = self._pop()
                    await conn.commit(batch[-1].failed)
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await conn.rollback()
                    raise
        except Exception as exc:
            self._fail_batch(first, batch, exc)
            return
        except BaseException as exc:  # cancelled while closing: nothing was committed
            self._fail_batch(first, batch, StoreClosedError(f"store {self.url}"))
            raise exc
        self._stats["commits"] += 1
        self._stats["largest_batch"] = max(self._stats["largest_batch"], len(batch))
        wrote_outbox = False
        for unit in batch:
            if unit.failed:
                self._stats["rolled_back"] += 1
                unit.settle(unit.body_error)
            else:
                self._stats["units"] += 1
                wrote_outbox = wrote_outbox or unit.wrote_outbox
                unit.settle(None)
        if wrote_outbox:
            self._outbox_flag = True
            self._outbox_event.set()

    def _fail_batch(self, first: _Unit, batch: list[_Unit], exc: Exception) -> None:
        error: BaseException = exc
        if not isinstance(exc, StoreError):
            error = StoreError(f"store {self.url}: the batch failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        if not batch:
            # The batch could not begin (database down): fail what is queued now as well, rather
            # than make each unit wait for its own connection timeout.
            first.fail_early(error)
            while (unit := self._pop()) is not None:
                unit.fail_early(error)
                self._stats["failed"] += 1
            self._stats["failed"] += 1
        for unit in batch:
            self._stats["failed"] += 1
            if unit.tx is not None:
                unit.tx.close()
            unit.settle(unit.body_error if unit.body_error is not None else error)
        _log.warning("store_batch_failed", url=self.url, units=len(batch), error=str(error))

    def stats(self) -> StoreStats:
        """Return the counters since the store was created."""
        return StoreStats(**self._stats)

    # --------------------------------------------------------------- schema

    async def migrate(self, namespace: str, steps: Sequence[MigrationStep]) -> int:
        """Bring ``namespace`` to version ``len(steps)``, one step per transaction.

        Each step runs in its own transaction together with the version update, so an
        interrupted migration resumes at the step that failed. Concurrent processes are
        serialised (PostgreSQL: an advisory lock; SQLite: the write lock). Never edit or
        reorder a released step: append new ones.

        Args:
            namespace: The application's name for its tables (``"inventory"``); ``"actorbus"``
                is the store's own.
            steps: SQL scripts (``;``-separated) or ``async def step(tx)`` functions.

        Returns:
            How many steps were applied now (0 if the schema was current).

        Raises:
            StoreSchemaError: The database is at a newer version than ``len(steps)``.
        """
        if not namespace:
            raise ValueError("a migration namespace must be a non-empty string")
        target = len(steps)
        applied = 0
        while True:

            async def step(tx: _Tx) -> bool:
                lock = self.dialect.migration_lock()
                if lock is not None:
                    await tx.execute(lock)
                await tx.execute(self.dialect.schema_table)
                found = await tx.fetchval(
                    "SELECT version FROM actorbus_schema WHERE namespace = ?", namespace
                )
                version = 0 if found is None else int(found)
                if version > target:
                    raise StoreSchemaError(self.url, namespace, version, target)
                if version == target:
                    return False
                current = steps[version]
                if isinstance(current, str):
                    for statement in split_statements(current):
                        await tx.execute(statement)
                else:
                    await current(tx)
                await tx.execute(
                    "INSERT INTO actorbus_schema (namespace, version, updated_at) "
                    "VALUES (?, ?, ?) ON CONFLICT (namespace) DO UPDATE "
                    "SET version = excluded.version, updated_at = excluded.updated_at",
                    namespace,
                    version + 1,
                    time.time(),
                )
                _log.info("store_migrated", namespace=namespace, version=version + 1)
                return True

            if not await self.run(step):
                return applied
            applied += 1

    # --------------------------------------------------------------- retention

    async def prune(self, now: float | None = None) -> PruneResult:
        """Delete inbox records older than the inbox window and sent outbox rows older than
        the sent window, in bounded chunks (one transaction each).

        Args:
            now: The current time (seconds since the epoch); ``time.time()`` if ``None``.

        Returns:
            How many rows were deleted from each table.
        """
        at = time.time() if now is None else now
        ident = self.dialect.row_identity
        inbox = await self._prune_chunks(
            f"DELETE FROM actorbus_inbox WHERE {ident} IN (SELECT {ident} FROM actorbus_inbox "
            "WHERE processed_at < ? LIMIT ?)",
            at - self.inbox_window,
        )
        outbox = await self._prune_chunks(
            "DELETE FROM actorbus_outbox WHERE id IN (SELECT id FROM actorbus_outbox "
            "WHERE sent_at < ? LIMIT ?)",
            at - self.sent_window,
        )
        if inbox or outbox:
            _log.info("store_pruned", url=self.url, inbox=inbox, outbox=outbox)
        return PruneResult(inbox=inbox, outbox=outbox)

    async def _prune_chunks(self, sql: str, cutoff: float) -> int:
        total = 0
        while True:

            async def delete(tx: _Tx) -> int:
                return await tx.execute(sql, cutoff, _PRUNE_CHUNK)

            deleted = await self.run(delete)
            total += deleted
            if deleted < _PRUNE_CHUNK:
                return total
