"""The broker file: schema, topology, and the batches of operations one transaction runs.

Everything here is blocking and runs in a worker thread, one batch at a time per
connection (:class:`Database`), never on the event loop. A batch is a list of :class:`Op`
run in one ``BEGIN IMMEDIATE`` … ``COMMIT``: that is the group commit (many publishes, acks
and claims, one fsync). ``BEGIN IMMEDIATE`` takes SQLite's write lock, so a claim (an
``UPDATE … RETURNING``) is atomic across every process sharing the file.

A message row is *ready* when ``owner IS NULL`` and ``ready_at <= now``; a delivery is a
*lease*: the row's ``owner`` is the id of the connection (a row of ``owners``) that holds it,
alive as long as that connection heartbeats. Acking deletes the row (so the file does not
grow); requeueing clears ``owner``. A connection whose process is gone from this host, or
whose heartbeat expired, is reclaimed by whoever notices first: its rows are requeued as
redelivered, next attempt.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

import anyio
import msgspec

from ..._host import host_key, owner_alive, process_started
from ..._log import get_logger
from ...exceptions import (
    BrokerError,
    ExchangeNotFoundError,
    QueueNotFoundError,
    TopologyError,
    UnroutableError,
)
from ...messages import Envelope
from .._deadletter import (
    XH_ATTEMPT,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
)
from .._protocol import DEFAULT_EXCHANGE, ExchangeSpec, QueueSpec, Topology, nearest_tier
from .._routing import Router
from ._options import SqliteOptions, storage_error

__all__ = ("Database", "Op", "Outcome", "Row", "encode_hook")

_log = get_logger("actorbus.brokers", broker="sqlite")

SCHEMA_VERSION = 1
REASON_REJECTED = "rejected"
REASON_MAXLEN = "maxlen"
REASON_DELIVERY_LIMIT = "delivery-limit"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exchanges(
    name TEXT PRIMARY KEY, type TEXT NOT NULL, durable INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queues(
    name TEXT PRIMARY KEY, spec BLOB NOT NULL, auto INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS bindings(
    exchange TEXT NOT NULL, queue TEXT NOT NULL, pattern TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (exchange, queue, pattern)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners(
    id INTEGER PRIMARY KEY AUTOINCREMENT, pid INTEGER NOT NULL, host TEXT NOT NULL,
    started TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages(
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    ready_at REAL NOT NULL,
    owner INTEGER,
    exchange TEXT NOT NULL,
    envelope BLOB NOT NULL,
    body BLOB NOT NULL,
    redelivered INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 1,
    requeues INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS active(
    queue TEXT PRIMARY KEY, owner INTEGER NOT NULL, sub INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_ready ON messages(queue, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS messages_owned ON messages(owner) WHERE owner IS NOT NULL;
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', 1), ('topology', 0);
"""

# Operation kinds.
PUBLISH, ACK, REQUEUE, UNCLAIM, RETRY, DEAD, CLAIM = range(7)
DEPTH, PURGE, CHECK, DECLARE, HEARTBEAT, RELEASE, UNSUBSCRIBE = range(7, 14)

#: Operations whose commit a caller waits on as a confirm: fsynced under synchronous=FULL.
_CONFIRMED = frozenset({PUBLISH, DECLARE, RETRY, DEAD})

Row = tuple[int, str, Envelope, bytes]
"""A claimed message: row id, exchange, envelope (with delivery state), body."""


class Op:
    """One operation of a batch: built on the event loop, run in the thread, then awaited.

    ``done`` is set on the event loop after the batch committed (or failed), never from
    the worker thread. A *detached* op (an ``acks=async`` ack) has no caller waiting on it:
    the writer runs it again after a failed transaction, and reports a lost lease itself.
    """

    __slots__ = ("a", "b", "c", "d", "detached", "done", "error", "kind", "result")

    def __init__(self, kind: int, a: Any = None, b: Any = None, c: Any = None, d: Any = None):
        self.kind = kind
        self.a = a
        self.b = b
        self.c = c
        self.d = d
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self.detached = False


class Outcome:
    """What a committed batch tells the connection: queues with new ready messages, and the
    other connections to hint about them."""

    __slots__ = ("peers", "ready")

    def __init__(self, ready: set[str], peers: list[int]) -> None:
        self.ready = ready
        self.peers = peers


class Database:
    """One connection to the broker file, used by one worker thread at a time.

    Args:
        options: The parsed URL.
    """

    def __init__(self, options: SqliteOptions) -> None:
        self.options = options
        self.path = options.path
        self.owner = 0
        self._db: sqlite3.Connection | None = None
        self._version = -1
        self._full = options.synchronous == "FULL"
        self._synced = self._full
        self._specs: dict[str, QueueSpec] = {}
        self._routers: dict[str, Router[str]] = {}
        self._encode = msgspec.msgpack.Encoder(enc_hook=encode_hook).encode
        self._decode = msgspec.msgpack.Decoder(Envelope).decode
        self._spec_decode = msgspec.json.Decoder(QueueSpec).decode
        self._host = host_key()
        self._started = process_started(os.getpid()) or ""
        self._handlers: dict[int, Callable[[sqlite3.Connection, Op, float, set[str]], Any]] = {
            PUBLISH: self._publish,
            ACK: self._ack,
            REQUEUE: self._requeue,
            UNCLAIM: self._unclaim,
            RETRY: self._retry,
            DEAD: self._dead,
            CLAIM: self._claim,
            DEPTH: self._depth,
            PURGE: self._purge,
            CHECK: self._check,
            DECLARE: self._declare,
            HEARTBEAT: self._heartbeat,
            RELEASE: self._release,
            UNSUBSCRIBE: self._unsubscribe,
        }

    # ----------------------------------------------------------------- open, close

    def open(self) -> None:
        """Open (creating) the file, register this connection, reclaim dead connections."""
        opts = self.options
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=64
            )
        except (sqlite3.Error, OSError) as exc:
            raise storage_error(self.path, "opening", exc) from exc
        self._db = db
        try:
            db.execute(f"PRAGMA busy_timeout = {opts.busy_timeout}")
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError("cannot switch the file to WAL mode")
            db.execute(f"PRAGMA synchronous = {opts.synchronous}")
            # Keep the -wal file from staying at its high-water mark after checkpoints.
            db.execute("PRAGMA journal_size_limit = 16777216")
            if opts.max_size_mb is not None:
                page = db.execute("PRAGMA page_size").fetchone()[0]
                pages = max(8, int(opts.max_size_mb * 1024 * 1024 / page))
                db.execute(f"PRAGMA max_page_count = {pages}")
            db.execute("BEGIN IMMEDIATE")
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise storage_error(self.path, "opening", exc) from exc
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
            if found != SCHEMA_VERSION:
                raise BrokerError(
                    f"broker file {str(self.path)!r} has schema version {found}, this actorbus "
                    f"reads version {SCHEMA_VERSION}; use the actorbus version that wrote it, "
                    "or drain it and move it aside"
                )
            now = time.time()
            cur = db.execute(
                "INSERT INTO owners(pid, host, started, expires) VALUES (?, ?, ?, ?)",
                (os.getpid(), self._host, self._started, now + opts.lease),
            )
            self.owner = int(cur.lastrowid or 0)
            ready: set[str] = set()
            self._reclaim(db, now, ready)
            db.execute("COMMIT")
        except BaseException as exc:
            self.close()
            if isinstance(exc, BrokerError):
                raise
            if isinstance(exc, sqlite3.Error | OSError):
                raise storage_error(self.path, "opening", exc) from exc
            raise

    def close(self) -> None:
        """Close the file (the connection's row is removed by a ``RELEASE`` batch first)."""
        db, self._db = self._db, None
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            if db.in_transaction:
                db.execute("ROLLBACK")
        with contextlib.suppress(sqlite3.Error):
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        db.close()

    # --------------------------------------------------------------------- batches

    def run(self, ops: list[Op]) -> Outcome:
        """Run ``ops`` in one transaction; each op gets its ``result`` or ``error``.

        Raises:
            BrokerError: The transaction failed as a whole (disk full, read-only, locked
                too long); nothing of it was stored. Names the file and the remedy.
        """
        db = self._db
        if db is None:
            raise BrokerError(f"broker file {str(self.path)!r} is closed")
        ready: set[str] = set()
        peers: list[int] = []
        handlers = self._handlers
        try:
            if self._full:
                # Only a confirm (publish, declare) needs its own fsync. A batch of acks and
                # claims commits without one: WAL keeps it atomic, the next confirmed commit
                # fsyncs it too, and a power loss before that only redelivers (at-least-once).
                confirm = any(op.kind in _CONFIRMED for op in ops)
                if confirm != self._synced:
                    db.execute(f"PRAGMA synchronous = {'FULL' if confirm else 'NORMAL'}")
                    self._synced = confirm
            db.execute("BEGIN IMMEDIATE")
            now = time.time()
            self._refresh(db)
            for op in ops:
                try:
                    op.result = handlers[op.kind](db, op, now, ready)
                except BrokerError as exc:
                    op.error = exc
            if ready:
                peers = [
                    r[0] for r in db.execute("SELECT id FROM owners WHERE id != ?", (self.owner,))
                ]
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            self._version = -1  # the cache may hold what was rolled back
            raise storage_error(self.path, f"committing {len(ops)} operation(s) to", exc) from exc
        return Outcome(ready, peers)

    # -------------------------------------------------------------------- topology

    def _refresh(self, db: sqlite3.Connection) -> None:
        version = db.execute("SELECT value FROM meta WHERE key = 'topology'").fetchone()[0]
        if version == self._version:
            return
        decode = self._spec_decode
        queues = db.execute("SELECT name, spec FROM queues")
        self._specs = {name: decode(spec) for name, spec in queues}
        routers: dict[str, Router[str]] = {
            name: Router(kind) for name, kind in db.execute("SELECT name, type FROM exchanges")
        }
        for exchange, queue, pattern in db.execute(
            "SELECT exchange, queue, pattern FROM bindings ORDER BY seq"
        ):
            router = routers.get(exchange)
            if router is not None:
                router.bind(pattern, queue)
        self._routers = routers
        self._version = version

    def _declare(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> None:
        topology: Topology = op.a
        db.execute("SAVEPOINT declare")
        try:
            self._declare_all(db, topology)
        except BaseException:
            db.execute("ROLLBACK TO declare")
            db.execute("RELEASE declare")
            raise
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'topology'")
        db.execute("RELEASE declare")
        self._refresh(db)

    def _declare_all(self, db: sqlite3.Connection, topology: Topology) -> None:
        for ex in topology.exchanges:
            if ex.name == DEFAULT_EXCHANGE:
                raise TopologyError(
                    "the default exchange '' cannot be declared: it exists implicitly and "
                    "routes by queue name; remove it from the topology"
                )
            row = db.execute(
                "SELECT type, durable FROM exchanges WHERE name = ?", (ex.name,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO exchanges(name, type, durable) VALUES (?, ?, ?)",
                    (ex.name, ex.type, int(ex.durable)),
                )
                continue
            old = ExchangeSpec(ex.name, row[0], bool(row[1]))
            _same(old, ex, "exchange")
        encode = msgspec.json.encode
        for spec in topology.queues:
            found = db.execute("SELECT spec, auto FROM queues WHERE name = ?", (spec.name,))
            row = found.fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO queues(name, spec, auto) VALUES (?, ?, 0)",
                    (spec.name, encode(spec)),
                )
            elif row[1]:
                db.execute(
                    "UPDATE queues SET spec = ?, auto = 0 WHERE name = ?",
                    (encode(spec), spec.name),
                )
            else:
                _same(self._spec_decode(row[0]), spec, "queue")
            if spec.dead_letter:
                dlq = QueueSpec(
                    spec.dlq_name,
                    durable=spec.durable,
                    queue_type=spec.queue_type,
                    dead_letter=False,
                    retry_delays=(),
                )
                db.execute(
                    "INSERT OR IGNORE INTO queues(name, spec, auto) VALUES (?, ?, 1)",
                    (dlq.name, encode(dlq)),
                )
        for b in topology.bindings:
            if b.exchange == DEFAULT_EXCHANGE:
                raise TopologyError(
                    f"cannot bind queue {b.queue!r} to the default exchange '': it routes by "
                    "queue name already; bind to a declared exchange instead"
                )
            exists = db.execute("SELECT 1 FROM exchanges WHERE name = ?", (b.exchange,))
            if exists.fetchone() is None:
                raise ExchangeNotFoundError(b.exchange, b.routing_key)
            if db.execute("SELECT 1 FROM queues WHERE name = ?", (b.queue,)).fetchone() is None:
                raise QueueNotFoundError(b.queue)
            db.execute(
                "INSERT OR IGNORE INTO bindings(exchange, queue, pattern, seq) VALUES "
                "(?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM bindings))",
                (b.exchange, b.queue, b.routing_key),
            )

    def _spec(self, queue: str) -> QueueSpec:
        spec = self._specs.get(queue)
        if spec is None:
            raise QueueNotFoundError(queue)
        return spec

    def _check(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> None:
        self._spec(op.a)

    # ------------------------------------------------------------------ publishing

    def _publish(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> int:
        exchange: str = op.a
        key: str = op.b
        targets: tuple[str, ...]
        if exchange:
            router = self._routers.get(exchange)
            if router is None:
                raise ExchangeNotFoundError(exchange, key)
            targets = router.route(key)
        else:
            targets = (key,) if key in self._specs else ()
        if not targets:
            if op.d:
                raise UnroutableError(exchange, key, op.c[0])
            return 0
        _, raw, body = op.c
        for queue in targets:
            db.execute(
                "INSERT INTO messages(queue, ready_at, exchange, envelope, body) "
                "VALUES (?, 0, ?, ?, ?)",
                (queue, exchange, raw, body),
            )
            ready.add(queue)
            limit = self._specs[queue].max_length
            if limit is not None:
                self._enforce_max_length(db, queue, limit, now, ready)
        return len(targets)

    def _enforce_max_length(
        self, db: sqlite3.Connection, queue: str, limit: int, now: float, ready: set[str]
    ) -> None:
        (count,) = db.execute(
            "SELECT count(*) FROM messages WHERE queue = ? AND owner IS NULL AND ready_at <= ?",
            (queue, now),
        ).fetchone()
        if count <= limit:
            return
        # RabbitMQ's default overflow: drop (dead-letter) from the head.
        for row in db.execute(
            "SELECT id, exchange, envelope, body, attempt FROM messages WHERE queue = ? "
            "AND owner IS NULL AND ready_at <= ? ORDER BY id LIMIT ?",
            (queue, now, count - limit),
        ).fetchall():
            self._dead_letter_row(db, queue, row, {XH_REASON: REASON_MAXLEN}, ready)

    # -------------------------------------------------------------------- settling

    def _ack(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        cur = db.execute("DELETE FROM messages WHERE id = ? AND owner = ?", (op.a, self.owner))
        return cur.rowcount > 0

    def _requeue(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        cur = db.execute(
            "UPDATE messages SET owner = NULL, redelivered = 1, attempt = attempt + 1, "
            "requeues = requeues + 1 WHERE id = ? AND owner = ?",
            (op.a, self.owner),
        )
        if cur.rowcount:
            ready.add(op.b)
        return cur.rowcount > 0

    def _unclaim(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        # Claimed for a subscription cancelled meanwhile: never delivered, so no redelivery.
        cur = db.execute(
            "UPDATE messages SET owner = NULL WHERE id = ? AND owner = ?", (op.a, self.owner)
        )
        if cur.rowcount:
            ready.add(op.b)
        return cur.rowcount > 0

    def _retry(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        row = db.execute(
            "SELECT envelope, attempt FROM messages WHERE id = ? AND owner = ?",
            (op.a, self.owner),
        ).fetchone()
        if row is None:
            return False
        spec = self._specs.get(op.b)
        delay: float = op.c
        tiers = spec.retry_delays if spec is not None else ()
        wait = nearest_tier(tiers, delay) if tiers else delay
        env = self._decode(row[0])
        attempt = row[1] + 1
        headers = dict(env.headers)
        if op.d:
            headers.update(op.d)
        headers[XH_ATTEMPT] = attempt
        env.headers = headers
        # A new id puts it at the tail of its queue, as a republish through a retry tier would.
        db.execute(
            "UPDATE messages SET id = (SELECT max(id) FROM messages) + 1, owner = NULL, "
            "ready_at = ?, envelope = ?, attempt = ?, redelivered = 0 WHERE id = ?",
            (now + max(wait, 0.0), self._encode(env), attempt, op.a),
        )
        ready.add(op.b)
        return True

    def _dead(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        row = db.execute(
            "SELECT id, exchange, envelope, body, attempt FROM messages WHERE id = ? AND owner = ?",
            (op.a, self.owner),
        ).fetchone()
        if row is None:
            return False
        self._dead_letter_row(db, op.b, row, op.c, ready)
        return True

    def _dead_letter_row(
        self,
        db: sqlite3.Connection,
        queue: str,
        row: tuple[Any, ...],
        headers: Mapping[str, Any],
        ready: set[str],
    ) -> None:
        row_id, exchange, raw, body, attempt = row
        db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
        spec = self._specs.get(queue)
        env = self._decode(raw)
        if spec is None or not spec.dead_letter or spec.dlq_name not in self._specs:
            _log.warning(
                "message_discarded",
                queue=queue,
                message_id=env.message_id,
                reason=headers.get(XH_REASON),
                detail="the queue has no dead-letter queue (dead_letter=False)",
            )
            return
        merged = dict(env.headers)
        merged.update(headers)
        merged.setdefault(XH_ORIGINAL_EXCHANGE, exchange)
        merged.setdefault(XH_ORIGINAL_ROUTING_KEY, env.routing_key)
        merged[XH_ORIGINAL_QUEUE] = queue
        env.headers = merged
        env.redelivered = False
        env.attempt = attempt
        db.execute(
            "INSERT INTO messages(queue, ready_at, exchange, envelope, body, attempt) "
            "VALUES (?, 0, ?, ?, ?, ?)",
            (spec.dlq_name, exchange, self._encode(env), body, attempt),
        )
        ready.add(spec.dlq_name)

    # ------------------------------------------------------------------- consuming

    def _claim(
        self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]
    ) -> tuple[list[Row], float | None]:
        """Lease up to ``op.b`` ready messages of queue ``op.a``; return them in queue order,
        and when fewer were ready, when the next delayed one will be (``None``: none)."""
        queue: str = op.a
        wanted: int = op.b
        spec = self._spec(queue)
        if spec.single_active_consumer and op.c is not None:
            db.execute(
                "INSERT OR IGNORE INTO active(queue, owner, sub) VALUES (?, ?, ?)",
                (queue, self.owner, op.c),
            )
            holder = db.execute("SELECT owner, sub FROM active WHERE queue = ?", (queue,))
            if tuple(holder.fetchone()) != (self.owner, op.c):
                return [], None  # another consumer is the active one; this one stands by
        limit = spec.delivery_limit
        out: list[Row] = []
        decode = self._decode
        while len(out) < wanted:
            rows = db.execute(
                "UPDATE messages SET owner = ? WHERE id IN (SELECT id FROM messages "
                "WHERE queue = ? AND owner IS NULL AND ready_at <= ? ORDER BY id LIMIT ?) "
                "RETURNING id, exchange, envelope, body, redelivered, attempt, requeues",
                (self.owner, queue, now, wanted - len(out)),
            ).fetchall()
            if not rows:
                break
            rows.sort()
            for row_id, exchange, raw, body, redelivered, attempt, requeues in rows:
                if limit is not None and requeues > limit:
                    self._dead_letter_row(
                        db,
                        queue,
                        (row_id, exchange, raw, body, attempt),
                        {XH_REASON: REASON_DELIVERY_LIMIT},
                        ready,
                    )
                    continue
                env = decode(raw)
                env.redelivered = bool(redelivered)
                env.attempt = attempt
                out.append((row_id, exchange, env, body))
        later: float | None = None
        if len(out) < wanted:
            later = db.execute(
                "SELECT min(ready_at) FROM messages WHERE queue = ? AND owner IS NULL",
                (queue,),
            ).fetchone()[0]
        return out, later

    def _depth(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> int:
        self._spec(op.a)
        (count,) = db.execute(
            "SELECT count(*) FROM messages WHERE queue = ? AND owner IS NULL AND ready_at <= ?",
            (op.a, now),
        ).fetchone()
        return int(count)

    def _purge(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> int:
        self._spec(op.a)
        cur = db.execute(
            "DELETE FROM messages WHERE queue = ? AND owner IS NULL AND ready_at <= ?",
            (op.a, now),
        )
        return cur.rowcount

    # ------------------------------------------------------------- leases, reclaim

    def _heartbeat(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> bool:
        """Extend this connection's lease and reclaim dead ones; ``False`` if ours was lost."""
        cur = db.execute(
            "UPDATE owners SET expires = ? WHERE id = ?", (now + self.options.lease, self.owner)
        )
        kept = cur.rowcount > 0
        if not kept:
            # Our deliveries were reclaimed (we stalled past the lease): settling them is now
            # a no-op. Register again under the same id, so that new claims work.
            db.execute(
                "INSERT INTO owners(id, pid, host, started, expires) VALUES (?, ?, ?, ?, ?)",
                (self.owner, os.getpid(), self._host, self._started, now + self.options.lease),
            )
        self._reclaim(db, now, ready)
        return kept

    def _reclaim(self, db: sqlite3.Connection, now: float, ready: set[str]) -> None:
        dead: list[int] = []
        for owner, pid, host, started, expires in db.execute(
            "SELECT id, pid, host, started, expires FROM owners WHERE id != ?", (self.owner,)
        ).fetchall():
            if expires < now or owner_alive(host, pid, started) is False:
                dead.append(owner)
        for owner in dead:
            rows = db.execute(
                "UPDATE messages SET owner = NULL, redelivered = 1, attempt = attempt + 1, "
                "requeues = requeues + 1 WHERE owner = ? RETURNING queue",
                (owner,),
            ).fetchall()
            db.execute("DELETE FROM owners WHERE id = ?", (owner,))
            ready.update(r[0] for r in rows)
            ready.update(self._give_up_active(db, owner, None))
            _log.warning("broker_connection_reclaimed", owner=owner, redelivered=len(rows))

    def _release(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> int:
        """Requeue everything this connection holds (closing) and forget the connection."""
        rows = db.execute(
            "UPDATE messages SET owner = NULL, redelivered = 1, attempt = attempt + 1, "
            "requeues = requeues + 1 WHERE owner = ? RETURNING queue",
            (self.owner,),
        ).fetchall()
        db.execute("DELETE FROM owners WHERE id = ?", (self.owner,))
        ready.update(r[0] for r in rows)
        ready.update(self._give_up_active(db, self.owner, None))
        return len(rows)

    def _unsubscribe(self, db: sqlite3.Connection, op: Op, now: float, ready: set[str]) -> None:
        ready.update(self._give_up_active(db, self.owner, op.a))

    @staticmethod
    def _give_up_active(db: sqlite3.Connection, owner: int, sub: int | None) -> list[str]:
        # A standby consumer (maybe in another process) takes over at its next claim: the
        # queues are reported ready so that it is hinted.
        if sub is None:
            rows = db.execute("DELETE FROM active WHERE owner = ? RETURNING queue", (owner,))
        else:
            rows = db.execute(
                "DELETE FROM active WHERE owner = ? AND sub = ? RETURNING queue", (owner, sub)
            )
        return [r[0] for r in rows.fetchall()]


def encode_hook(obj: Any) -> Any:
    # Header mappings may be read-only views (the envelope's default is a mappingproxy).
    if isinstance(obj, Mapping):
        return dict(obj)
    raise NotImplementedError(f"cannot store a header value of type {type(obj).__name__!r}")


def _same(old: Any, new: Any, kind: str) -> None:
    for f in fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            raise TopologyError(
                f"{kind} {new.name!r} already exists with {f.name}={a!r}; cannot redeclare it "
                f"with {f.name}={b!r}. Declare it with the same arguments, or use a new "
                f"{kind} name (the broker file keeps a {kind}'s arguments for its lifetime)"
            )
