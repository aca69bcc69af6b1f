"""The store seam: what the message pipeline, the HTTP front door and a relay may rely on.

Every store (built in or third party) satisfies :class:`Store`; what it must *do* is pinned by
``actorbus.testing.StoreConformance``. The values (:class:`OutboxRow`, :class:`StoreStats`,
:class:`PruneResult`) are plain, immutable and cheap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import msgspec

from ..messages import Envelope

if TYPE_CHECKING:
    from typing import Self

__all__ = (
    "DEFAULT_INBOX_WINDOW",
    "DEFAULT_SENT_WINDOW",
    "MigrationStep",
    "OutboxRelay",
    "OutboxRow",
    "PruneResult",
    "Row",
    "Store",
    "StoreStats",
    "Transaction",
    "TxInbox",
    "TxOutbox",
)

T = TypeVar("T")

#: How long an inbox record is kept (seconds): a redelivery arriving later than this after the
#: first processing is no longer recognised as a duplicate and takes effect again. Seven days
#: covers broker redeliveries (seconds to minutes), retry tiers (minutes to hours) and an
#: operator replaying a dead-letter queue after a weekend (NServiceBus keeps 7 days too).
DEFAULT_INBOX_WINDOW = 7 * 24 * 3600.0

#: How long a *sent* outbox row is kept (seconds). Nothing depends on it once the broker has
#: confirmed the publish; the rows are kept one day for inspection ("was it published, when?").
#: Unsent rows are never pruned.
DEFAULT_SENT_WINDOW = 24 * 3600.0


class Row(Protocol):
    """A result row: index by position (``row[0]``) or by column name (``row["sku"]``).

    It is the driver's own row (``sqlite3.Row``, ``asyncpg.Record``), not a copy.
    """

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def keys(self) -> Any:
        """Return the column names."""
        ...


class OutboxRow(msgspec.Struct, frozen=True, gc=False):
    """One outbox message claimed by a relay.

    Attributes:
        id: The row id; publish rows of one claim in ``id`` order.
        exchange: The exchange to publish to.
        envelope: The message's envelope, as written by ``tx.outbox.add``.
        body: The encoded message body.
        attempts: How many times it was claimed, this claim included (1 on the first).
    """

    id: int
    exchange: str
    envelope: Envelope
    body: bytes
    attempts: int


class StoreStats(msgspec.Struct, frozen=True, gc=False):
    """Counters since the store was opened (for metrics and for the conformance suite).

    Attributes:
        units: Units of work that committed.
        rolled_back: Units rolled back to their savepoint (their body raised).
        failed: Units failed by their batch (lost connection, failed COMMIT).
        batches: Database transactions begun.
        commits: Database COMMITs that succeeded (one fsync each on a durable store).
        largest_batch: The most units one COMMIT carried.
    """

    units: int = 0
    rolled_back: int = 0
    failed: int = 0
    batches: int = 0
    commits: int = 0
    largest_batch: int = 0


class PruneResult(msgspec.Struct, frozen=True, gc=False):
    """What :meth:`Store.prune` deleted.

    Attributes:
        inbox: Inbox records older than the inbox window.
        outbox: Sent outbox rows older than the sent window.
    """

    inbox: int = 0
    outbox: int = 0


#: One migration step: a SQL script (``;``-separated statements), or a coroutine function that
#: gets the migration's transaction (for data migrations).
MigrationStep = str | Callable[["Transaction"], Awaitable[None]]


class TxInbox(Protocol):
    """The inbox of one transaction: deduplication by the message's identity."""

    async def claim(self, consumer: str, message_id: str) -> bool:
        """Record that ``consumer`` processes ``message_id``, in this transaction.

        Args:
            consumer: Who deduplicates (a service's queue or handler name); ids are per consumer.
            message_id: The message's identity: the payload's ``eventId``, or the transport
                message id where the payload has none. Never empty.

        Returns:
            ``True`` if it is new (process it), ``False`` if it was already processed (by a
            committed transaction, or earlier in this one): skip the effects, ack the delivery.
            On PostgreSQL a claim racing an uncommitted claim of the same id in another
            process waits for that transaction, then answers ``False`` if it committed.

        Raises:
            InboxKeyError: ``message_id`` (or ``consumer``) is empty.
        """
        ...


class TxOutbox(Protocol):
    """The outbox of one transaction: messages published if and only if it commits."""

    async def add(
        self, exchange: str, envelope: Envelope, body: bytes, *, delay: float = 0.0
    ) -> None:
        """Write a message to the outbox in this transaction.

        Args:
            exchange: The exchange to publish to.
            envelope: Its envelope (stored msgpack-encoded; headers keep bytes values).
            body: The encoded body.
            delay: Seconds before a relay may claim it (a scheduled message).
        """
        ...


class Transaction(Protocol):
    """One unit of work: the application's SQL, the inbox and the outbox, committed together.

    Valid only inside its ``async with`` block (or the ``store.run`` callback); afterwards every
    call raises ``StoreClosedError``, except :meth:`wait_committed`. Placeholders are ``?`` on
    every store.
    """

    @property
    def inbox(self) -> TxInbox:
        """The inbox, in this transaction."""
        ...

    @property
    def outbox(self) -> TxOutbox:
        """The outbox, in this transaction."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed (0 for DDL)."""
        ...

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """Run a query; return its first row, or ``None``."""
        ...

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        """Run a query; return every row."""
        ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query; return the first column of its first row, or ``None``."""
        ...

    async def wait_committed(self) -> None:
        """Wait until the batch holding this unit has committed.

        Raises:
            StoreUnavailableError: The connection was lost before the COMMIT was confirmed.
            StoreError: The COMMIT failed; nothing of this unit was kept.
            StoreUsageError: Called inside a transaction body (it would wait for itself).
        """
        ...


class OutboxRelay(Protocol):
    """The relay's side of the outbox: claim rows by state with a lease, then settle them."""

    async def claim(
        self, owner: str, limit: int = 100, lease: float = 30.0, *, now: float | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` unsent rows to ``owner``, oldest first.

        A row is claimable when it is unsent, its ``delay`` has passed, and it is not leased
        (or its lease expired: a crashed relay's rows are claimed again, never lost). Two
        claimers (tasks or processes) never get the same row while its lease runs.

        Args:
            owner: A name for the claimer (host and pid), recorded on the rows.
            limit: The most rows to return.
            lease: Seconds before the rows may be claimed by someone else.
            now: The current time (seconds since the epoch); ``time.time()`` if ``None``.

        Returns:
            The rows, in ``id`` order (publish them in that order).
        """
        ...

    async def mark_sent(self, ids: Sequence[int], *, now: float | None = None) -> None:
        """Mark rows as published (confirmed by the broker); they are pruned later."""
        ...

    async def release(
        self,
        ids: Sequence[int],
        *,
        delay: float = 0.0,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """Give claimed rows back, claimable again after ``delay`` seconds (retry later).

        Args:
            ids: The rows.
            delay: Seconds before they may be claimed again.
            error: Why the publish failed; recorded on the rows for inspection.
            now: The current time; ``time.time()`` if ``None``.
        """
        ...

    async def leases(self, *, now: float | None = None) -> dict[str, int]:
        """Return the owners holding unexpired leases on unsent rows, with their row counts.

        A relay checks them for owners that died on its own host (:meth:`expire`), so that
        their rows go out at once instead of after the lease.
        """
        ...

    async def expire(self, owner: str) -> int:
        """End ``owner``'s leases now (it is known dead); return how many rows were freed.

        The rows become claimable at once; nothing else about them changes.
        """
        ...

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until a transaction of *this process* that added outbox rows has committed.

        The wake-up is remembered: a commit between the previous return and this call returns
        at once. Commits by other processes are not signalled: poll with ``claim`` on a timeout
        as the backstop.

        Returns:
            ``True`` if woken by a commit, ``False`` on timeout.
        """
        ...

    async def pending(self) -> int:
        """Return how many rows are not yet sent."""
        ...


class Store(Protocol):
    """A transactional store: inbox, outbox and the application's tables in one database.

    Use ``async with store:`` to connect, create the schema and apply migrations; everything
    else is valid only inside that block.
    """

    @property
    def url(self) -> str:
        """The store's URL with its password masked."""
        ...

    @property
    def outbox(self) -> OutboxRelay:
        """The relay's side of the outbox."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def transaction(self, *, wait: bool = True) -> AbstractAsyncContextManager[Transaction]:
        """Return a context manager running its body as one unit of a group commit.

        Args:
            wait: If ``True``, leaving the block waits for the COMMIT and raises if it failed.
                If ``False``, leaving returns as soon as the unit's savepoint is released; call
                ``tx.wait_committed()`` later (before acking).
        """
        ...

    async def run(self, fn: Callable[[Transaction], Awaitable[T]], *, attempts: int = 5) -> T:
        """Run ``fn(tx)`` as one unit and wait for its commit; re-run it on a conflict.

        Args:
            fn: The unit of work; it may run more than once, so it must do nothing outside the
                transaction that cannot repeat.
            attempts: How many times to run it on ``StoreConflictError``.
        """
        ...

    async def migrate(self, namespace: str, steps: Sequence[MigrationStep]) -> int:
        """Bring ``namespace`` (an application's tables) to version ``len(steps)``.

        Returns:
            The number of steps applied now.

        Raises:
            StoreSchemaError: The database is at a version newer than ``len(steps)``.
        """
        ...

    async def prune(self, now: float | None = None) -> PruneResult:
        """Delete inbox records and sent outbox rows older than their windows."""
        ...

    async def ping(self) -> None:
        """Check that the database answers (readiness).

        Raises:
            StoreUnavailableError: It does not.
        """
        ...

    def stats(self) -> StoreStats:
        """Return the counters since the store was opened."""
        ...
