"""Transactional outbox, persistent inbox and the relay that publishes the outbox.

Every service writes its effect, the inbox row of the message that caused it, and the messages
it must publish in **one** SQLite transaction. The :class:`OutboxRelay` (a background task)
publishes pending outbox rows with publisher confirms and marks them sent afterwards, retrying
with backoff while the broker is away. So:

* an order answered ``202`` is never lost: its ``order.created`` events are in the same commit;
* a redelivered message has no second effect: its ``eventId`` is in the inbox, and what its
  first handling must publish is in the outbox, published (again) by the relay if need be;
* a crash between "published" and "marked sent" publishes a row twice, with the same
  ``eventId``: consumers drop the copy;
* a row keeps the trace context (``traceparent``) current when it was written, and the relay
  publishes it in that trace: a trace started at ``POST /orders`` goes on through the events.

Replies to commands are not relayed: actorbus can only reply from the handler
(``HandlerContext.reply``). A command handler stores its reply in the inbox row instead and, on
a duplicate, replies again with the stored one (same ``eventId``); see :func:`reply_once`.
"""

from __future__ import annotations

import functools
import random
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import anyio
import msgspec

from actorbus import Command, HandlerContext, Message, ServiceContext
from actorbus.app import continue_trace, trace_headers
from actorbus.exceptions import UnroutableError

from .db import Database

__all__ = (
    "OUTBOX_SCHEMA",
    "Handled",
    "InboxEntry",
    "OutboxRelay",
    "consume_once",
    "enqueue",
    "inbox_lookup",
    "inbox_record",
    "migrate_outbox",
    "pending_count",
    "reply_once",
)

T = TypeVar("T")
R = TypeVar("R", bound=Message)

#: Tables every service with an inbox and/or an outbox adds to its schema.
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('event', 'command')),
    message_type    TEXT    NOT NULL,            -- routing key (wire name)
    message_id      TEXT    NOT NULL,            -- the message's eventId
    body            BLOB    NOT NULL,            -- JSON, exactly what is published
    correlation_id  TEXT,
    causation_id    TEXT,
    expect_reply    INTEGER NOT NULL DEFAULT 0,
    headers         BLOB,                        -- JSON: trace context to publish with
    status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'dropped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    created_at      REAL    NOT NULL,
    sent_at         REAL,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS inbox (
    message_id   TEXT PRIMARY KEY,               -- eventId of a processed message
    message_type TEXT NOT NULL,
    processed_at REAL NOT NULL,
    reply_type   TEXT,                           -- for commands: the reply sent, to resend
    reply        BLOB
);
"""

_encode = msgspec.json.encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode


def migrate_outbox(conn: sqlite3.Connection) -> None:
    """Add what later versions added to an existing outbox table (the ``headers`` column)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    if columns and "headers" not in columns:
        conn.execute("ALTER TABLE outbox ADD COLUMN headers BLOB")


# ------------------------------------------------------------------- inbox (in a tx)


class InboxEntry(NamedTuple):
    """What the inbox remembers of a processed message."""

    message_type: str
    reply_type: str | None
    reply: bytes | None


def inbox_lookup(conn: sqlite3.Connection, message_id: str) -> InboxEntry | None:
    """Return the inbox entry of ``message_id``, or ``None`` if it was never processed."""
    row = conn.execute(
        "SELECT message_type, reply_type, reply FROM inbox WHERE message_id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return None
    return InboxEntry(row[0], row[1], row[2])


def inbox_record(
    conn: sqlite3.Connection, message_id: str, message_type: str, reply: Message | None = None
) -> bytes | None:
    """Record ``message_id`` as processed (and the reply sent for it); return the reply's JSON."""
    body = _encode(reply) if reply is not None else None
    conn.execute(
        "INSERT INTO inbox (message_id, message_type, processed_at, reply_type, reply) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            message_id,
            message_type,
            time.time(),
            type(reply).__routing_key__ if reply is not None else None,
            body,
        ),
    )
    return body


# ------------------------------------------------------------------ outbox (in a tx)


def enqueue(
    conn: sqlite3.Connection,
    message: Message,
    *,
    correlation_id: str | None,
    causation_id: str | None = None,
    expect_reply: bool = False,
) -> None:
    """Add ``message`` to the outbox; it is published after the transaction commits.

    Args:
        conn: The connection of the running transaction.
        message: An event (published to the topic exchange) or a command (sent to its service).
        correlation_id: The business flow's id: the order id.
        causation_id: The ``eventId`` of the message whose handling produced this one.
        expect_reply: For a command: ask for a reply to this service's queue.

    The current trace context (of the HTTP request or delivery being handled) is stored with
    the row, for the relay to publish the message in the same trace.
    """
    now = time.time()
    trace = trace_headers()
    conn.execute(
        "INSERT INTO outbox (kind, message_type, message_id, body, correlation_id, causation_id,"
        " expect_reply, headers, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "command" if isinstance(message, Command) else "event",
            type(message).__routing_key__,
            message.message_id,
            _encode(message),
            correlation_id,
            causation_id,
            int(expect_reply),
            _encode(trace) if trace else None,
            now,
            now,
        ),
    )


# --------------------------------------------------------- handler-side helpers


@dataclass(frozen=True, slots=True)
class Handled(Generic[T]):
    """The result of :func:`consume_once`.

    Attributes:
        first: ``False`` when the message was a duplicate and nothing was done.
        value: What the effect returned (``None`` for a duplicate).
    """

    first: bool
    value: T | None


async def consume_once(
    db: Database, ctx: HandlerContext, effect: Callable[[sqlite3.Connection], T]
) -> Handled[T]:
    """Run ``effect(conn)`` unless this delivery's ``eventId`` was processed before.

    The inbox row and the effect (with whatever it :func:`enqueue` s) commit together.
    """
    message_id = ctx.message_id
    message_type = ctx.envelope.type

    def transaction(conn: sqlite3.Connection) -> Handled[T]:
        if inbox_lookup(conn, message_id) is not None:
            return Handled(False, None)
        value = effect(conn)
        inbox_record(conn, message_id, message_type)
        return Handled(True, value)

    return await db.write(transaction)


async def reply_once(
    db: Database,
    ctx: HandlerContext,
    reply_type: type[R],
    effect: Callable[[sqlite3.Connection], R],
) -> tuple[R, bool]:
    """Handle a command once and reply; on a duplicate, reply again with the stored reply.

    Returns:
        The reply sent, and whether this was the first handling.
    """
    message_id = ctx.message_id
    message_type = ctx.envelope.type

    def transaction(conn: sqlite3.Connection) -> tuple[bytes, bool]:
        entry = inbox_lookup(conn, message_id)
        if entry is not None and entry.reply is not None:
            return entry.reply, False
        reply = effect(conn)
        inbox_record(conn, message_id, message_type, reply)
        return _encode(reply), True

    body, first = await db.write(transaction)
    reply = msgspec.json.decode(body, type=reply_type)
    ctx.reply(reply)
    return reply, first


# ------------------------------------------------------------------------- relay


class _Row(NamedTuple):
    id: int
    kind: str
    message_type: str
    body: bytes
    correlation_id: str | None
    causation_id: str | None
    expect_reply: bool
    attempts: int
    headers: bytes | None


class OutboxRelay:
    """Publishes a service's outbox with confirms; run :meth:`run` as a background task.

    Rows are published oldest first; a row is marked ``sent`` only after the broker confirmed
    it. A failed row is retried with exponential backoff (capped at ``max_backoff``) without
    holding up the rows behind it. An event that no queue is bound to is retried a few times
    (a consumer may still be declaring its queue), then ``dropped`` with a warning: that is
    publish/subscribe with no subscriber. A command that cannot be routed is retried for ever:
    its service is not running yet.

    Args:
        db: The service's database (holding :data:`OUTBOX_SCHEMA`).
        types: The message types the service publishes (decoded back from the rows).
        batch_size: Rows read per round.
        max_backoff: Longest wait before retrying a row, in seconds.
        poll_interval: Longest sleep when idle (the relay is normally woken by :meth:`notify`).
        retention: Seconds a sent (or dropped) row is kept, for inspection, before it is purged.
    """

    def __init__(
        self,
        db: Database,
        types: Iterable[type[Message]],
        *,
        batch_size: int = 200,
        max_backoff: float = 30.0,
        poll_interval: float = 5.0,
        retention: float = 24 * 3600.0,
    ) -> None:
        self._db = db
        self._types: dict[str, type[Message]] = {t.__routing_key__: t for t in types}
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._poll_interval = poll_interval
        self._retention = retention
        self._next_purge = 0.0
        self._wake = anyio.Event()

    def notify(self) -> None:
        """Wake the relay: call after committing a transaction that enqueued messages."""
        self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Return the delay before retrying a row that failed ``attempts`` times (jittered)."""
        base = min(self._max_backoff, 0.1 * 2.0 ** min(attempts, 20))
        return base * random.uniform(0.8, 1.2)

    async def run(self, ctx: ServiceContext) -> None:
        """Publish pending rows until cancelled."""
        while True:
            # Reset before reading, so that a notify() during this round is not lost.
            self._wake = anyio.Event()
            if time.time() >= self._next_purge:
                await self._db.write(self._purge)
            rows, next_due = await self._db.read(self._pending)
            if rows:
                updates = [await self._publish(ctx, row) for row in rows]
                await self._db.write(functools.partial(self._settle, updates=updates))
                if len(rows) == self._batch_size:
                    continue
                rows, next_due = await self._db.read(self._pending)
                if rows:
                    continue
            delay = self._poll_interval
            if next_due is not None:
                delay = max(0.0, min(delay, next_due - time.time()))
            with anyio.move_on_after(delay):
                await self._wake.wait()

    def _pending(self, conn: sqlite3.Connection) -> tuple[list[_Row], float | None]:
        now = time.time()
        rows = [
            _Row(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8])
            for r in conn.execute(
                "SELECT id, kind, message_type, body, correlation_id, causation_id, "
                "expect_reply, attempts, headers FROM outbox WHERE status = 'pending' "
                "AND next_attempt_at <= ? ORDER BY id LIMIT ?",
                (now, self._batch_size),
            )
        ]
        (next_due,) = conn.execute(
            "SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return rows, next_due

    async def _publish(self, ctx: ServiceContext, row: _Row) -> tuple[Any, ...]:
        """Publish one row; return the UPDATE parameters that settle it."""
        now = time.time()
        message_type = self._types.get(row.message_type)
        if message_type is None:
            error = (
                f"no publishable type for {row.message_type!r} (outbox row {row.id}); "
                f"known: {sorted(self._types)}"
            )
            ctx.log.error("outbox_row_dropped", row=row.id, error=error)
            return ("dropped", row.attempts + 1, now, now, error, row.id)
        try:
            message = msgspec.json.decode(row.body, type=message_type)
        except msgspec.DecodeError as exc:  # a row this code cannot read will never publish
            error = f"outbox row {row.id} is not a valid {row.message_type!r}: {exc}"
            ctx.log.error("outbox_row_dropped", row=row.id, error=error)
            return ("dropped", row.attempts + 1, now, now, error, row.id)
        try:
            headers = _decode_headers(row.headers) if row.headers else None
        except msgspec.DecodeError:  # only the trace is lost: publish without it
            headers = None
        try:
            with continue_trace(headers):
                if isinstance(message, Command):
                    await ctx.send(
                        message,
                        correlation_id=row.correlation_id,
                        causation_id=row.causation_id,
                        expect_reply=row.expect_reply,
                    )
                else:
                    await ctx.publish(
                        message, correlation_id=row.correlation_id, causation_id=row.causation_id
                    )
        except anyio.get_cancelled_exc_class():
            raise
        except UnroutableError as exc:  # a command whose service has not declared its queue
            attempts = row.attempts + 1
            retry_at = now + self.backoff(attempts)
            ctx.log.warning(
                "outbox_unroutable_retrying",
                message_type=row.message_type,
                correlation_id=row.correlation_id,
                attempts=attempts,
                retry_in=round(retry_at - now, 3),
            )
            return ("pending", attempts, retry_at, None, str(exc), row.id)
        except Exception as exc:
            attempts = row.attempts + 1
            retry_at = now + self.backoff(attempts)
            ctx.log.warning(
                "outbox_publish_failed",
                message_type=row.message_type,
                correlation_id=row.correlation_id,
                attempts=attempts,
                retry_in=round(retry_at - now, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
            return ("pending", attempts, retry_at, None, f"{type(exc).__name__}: {exc}", row.id)
        return ("sent", row.attempts + 1, now, now, None, row.id)

    def _purge(self, conn: sqlite3.Connection) -> None:
        now = time.time()
        self._next_purge = now + min(3600.0, self._retention / 10)
        conn.execute(
            "DELETE FROM outbox WHERE status != 'pending' AND sent_at < ?",
            (now - self._retention,),
        )

    @staticmethod
    def _settle(conn: sqlite3.Connection, updates: list[tuple[Any, ...]]) -> None:
        conn.executemany(
            "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, sent_at = ?, "
            "last_error = ? WHERE id = ?",
            updates,
        )


def pending_count(conn: sqlite3.Connection) -> int:
    """Return how many outbox rows wait to be published (for probes and tests)."""
    (count,) = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
    return int(count)
