"""The connection a service holds: :class:`SqliteBroker`, the Broker protocol on a file.

One task, the *writer*, owns the connection's :class:`~._db.Database`: it takes every
operation submitted since its last batch (publishes, settlements, claims for subscriptions
with prefetch room, reads), runs them in one transaction in a worker thread, then wakes
their callers, hands claimed messages to the subscriptions' callbacks and hints the other
connections of the file. Two more tasks heartbeat the connection's lease and receive
wake-up hints.

Acks (with ``acks=async``, the default) are *detached*: ``ack()`` queues its operation and
returns, the writer commits it with the next batch. A consumer that awaits each ack before
its next message (the App's consumer actors do) would otherwise be held to one transaction
per message, while concurrent publishers share each transaction by the dozen: under a burst
the publishers would run far ahead and the burst be delivered mostly after it was published.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
from anyio.lowlevel import checkpoint

from ..._log import get_logger
from ...exceptions import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    PublishError,
    PublishTooLargeError,
)
from ...messages import OutboundMessage
from .._protocol import Delivery, DeliveryCallback, Subscription, Topology
from ._db import (
    CHECK,
    CLAIM,
    DECLARE,
    DEPTH,
    HEARTBEAT,
    PUBLISH,
    PURGE,
    RELEASE,
    REQUEUE,
    UNCLAIM,
    UNSUBSCRIBE,
    Database,
    Op,
    Row,
    encode_hook,
)
from ._delivery import Holder, SqliteDelivery, SqliteSubscription
from ._options import SqliteOptions, parse_sqlite_url
from ._wakeup import ALL, Hints

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup

__all__ = ("SqliteBroker",)

_log = get_logger("actorbus.brokers", broker="sqlite")

#: Pause after a failed transaction before the writer tries claims again (a full or
#: read-only disk must not turn into a busy loop); callers get the error at once.
_FAILURE_PAUSE = 0.2


class SqliteBroker:
    """The durable embedded broker: AMQP semantics in one SQLite file; see
    :mod:`actorbus.brokers.sqlite`.

    Example::

        async with SqliteBroker("sqlite:///.actorbus/broker.sqlite3") as broker:
            await broker.declare(topology)
            sub = await broker.consume("inventory.queue", on_delivery, prefetch=50)

    Args:
        url: ``sqlite:///relative/file.sqlite3`` or ``sqlite:////absolute/file.sqlite3``
            with the query options of :mod:`actorbus.brokers.sqlite`.
        max_message_size: Refuse bodies larger than this many bytes with
            :class:`~actorbus.exceptions.PublishTooLargeError`; ``None`` for no limit.

    Raises:
        ConfigurationError: Not a ``sqlite:///…`` URL, or a bad option.
    """

    def __init__(
        self,
        url: str = "sqlite:///.actorbus/broker.sqlite3",
        *,
        max_message_size: int | None = None,
    ) -> None:
        self._opts: SqliteOptions = parse_sqlite_url(url)
        if max_message_size is not None and max_message_size < 1:
            raise ConfigurationError(
                f"max_message_size must be a positive number of bytes or None, "
                f"got {max_message_size!r}"
            )
        self._max_size = max_message_size
        # Envelopes are encoded on the event loop, one caller at a time (~1 us), so that a
        # header that cannot be stored fails its own publish, not the whole batch.
        self._encode = msgspec.msgpack.Encoder(enc_hook=encode_hook).encode
        self._db = Database(self._opts)
        self._hints = Hints(self._opts.path)
        self._limiter = anyio.CapacityLimiter(1)
        self._ops: list[Op] = []
        self._dirty: set[str] = set()
        self._subs: list[SqliteSubscription] = []
        self._getter = Holder(self)
        self._keys = itertools.count(1)
        self._wake = anyio.Event()
        self._due: float | None = None  # wall time the earliest delayed message is ready
        self._open = False
        self._closing = False
        self._healthy = True
        self._tg: TaskGroup | None = None

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<SqliteBroker {self._opts.url!r} {state}>"

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The broker's URL (a file URL holds no credentials)."""
        return self._opts.url

    @property
    def path(self) -> str:
        """The broker file."""
        return str(self._opts.path)

    @property
    def is_ready(self) -> bool:
        """Entered, the last transaction succeeded, and no subscription stopped by a failure."""
        if not self._open or self._closing or not self._healthy:
            return False
        return not any(sub.failed for sub in self._subs)

    @property
    def connected(self) -> bool:
        """Entered and not closing: subscriptions receive deliveries."""
        return self._open and not self._closing

    @property
    def confirm_acks(self) -> bool:
        """Whether ``ack()`` waits for its commit (``acks=confirmed``) or returns at once."""
        return self._opts.confirm_acks

    @property
    def hints_enabled(self) -> bool:
        """Whether other processes wake this one at once (else only the backstop poll)."""
        return self._hints.enabled

    # ------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Open the file (creating it), reclaim dead connections' leases, start the writer.

        Raises:
            BrokerConnectionError: The file cannot be opened or written (read-only or
                missing directory, not a database); the message names the path.
            BrokerError: The broker is already entered.
        """
        if self._open:
            raise BrokerError(f"broker {self.url} is already entered; enter it only once")
        await anyio.to_thread.run_sync(self._db.open, limiter=self._limiter)
        await anyio.to_thread.run_sync(self._hints.open, self._db.owner, limiter=self._limiter)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._open = True
        self._closing = False
        tg.start_soon(self._write_loop)
        tg.start_soon(self._heartbeat_loop)
        tg.start_soon(self._hint_loop)
        _log.info(
            "broker_connected",
            url=self.url,
            owner=self._db.owner,
            synchronous=self._opts.synchronous,
            wakeup_hints=self._hints.enabled,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: stop claiming, requeue every unsettled delivery (redelivered), close the file.

        Messages waiting out a retry delay stay in the file: any connection delivers them
        when they are due.
        """
        if not self._open:
            return
        self._closing = True
        requeued = 0
        try:
            with anyio.CancelScope(shield=True):
                requeued = await self.submit(Op(RELEASE))
        except BrokerError as error:
            _log.warning("broker_release_failed", url=self.url, error=str(error))
        for holder in (*self._subs, self._getter):
            holder.drop_all()
        self._subs.clear()
        self._open = False
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        for op in self._ops:  # submitted while closing: never run
            op.error = BrokerConnectionError(self.url, "the broker was closed")
            op.done.set()
        self._ops.clear()
        self._hints.close()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._db.close, limiter=self._limiter)
        _log.info("broker_closed", url=self.url, requeued=requeued)

    # --------------------------------------------------------------------- writer

    async def submit(self, op: Op) -> Any:
        """Run ``op`` in the next group commit; return its result once it is on disk.

        Raises:
            BrokerConnectionError: Not entered.
            BrokerError: The operation's own error, or the transaction's (names the file).
        """
        if not self._open:
            raise BrokerConnectionError(
                self.url, "not connected; enter the broker first: 'async with broker:'"
            )
        self._ops.append(op)
        self._wake.set()
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    def enqueue(self, op: Op) -> None:
        """Run ``op`` in the next group commit without waiting for it (a detached ack).

        Nobody awaits it: after a failed transaction the writer runs it again (settling is
        idempotent: it touches the row only while this connection holds it), and a lease
        lost meanwhile is logged by the writer. Once the broker is closing it is dropped:
        closing requeues every unsettled delivery anyway.
        """
        if not self._open or self._closing:
            return
        op.detached = True
        self._ops.append(op)
        self._wake.set()

    def _plan_claims(self) -> list[tuple[SqliteSubscription, Op]]:
        if not self._dirty or self._closing:
            return []
        claims: list[tuple[SqliteSubscription, Op]] = []
        for sub in self._subs:
            if sub.queue in self._dirty and sub.claiming and sub.room > 0:
                claims.append((sub, Op(CLAIM, sub.queue, sub.room, sub.key)))
        return claims

    def _wait_time(self) -> float:
        wait = self._opts.poll
        if self._due is not None:
            wait = min(wait, max(self._due - time.time(), 0.0))
        return wait

    async def _write_loop(self) -> None:
        while True:
            claims = self._plan_claims()
            if not self._ops and not claims:
                self._wake = anyio.Event()
                with anyio.move_on_after(self._wait_time()) as scope:
                    await self._wake.wait()
                if scope.cancelled_caught:
                    # The backstop poll, or a delayed message is due: look at every queue.
                    self._due = None
                    self._dirty.update(sub.queue for sub in self._subs if sub.claiming)
                continue
            ops, self._ops = self._ops, []
            claimed_queues = {sub.queue for sub, _ in claims}
            self._dirty -= claimed_queues
            batch = ops + [op for _, op in claims]
            try:
                outcome = await anyio.to_thread.run_sync(self._db.run, batch, limiter=self._limiter)
            except Exception as exc:
                if not isinstance(exc, BrokerError):
                    # A bug of ours or a value SQLite refused: fail these callers, keep going.
                    _log.error("broker_batch_crashed", url=self.url, exc_info=exc)
                    exc = BrokerError(
                        f"sqlite broker {self.url}: a batch of {len(batch)} operation(s) "
                        f"failed: {type(exc).__name__}: {exc}"
                    )
                self._healthy = False
                retry: list[Op] = []
                for op in ops:
                    if op.detached:
                        op.result = None
                        op.error = None
                        retry.append(op)
                        continue
                    op.error = exc
                    op.done.set()
                self._ops[:0] = retry  # detached acks: again, ahead of what came since
                self._dirty |= claimed_queues
                _log.error("broker_transaction_failed", url=self.url, error=str(exc))
                await anyio.sleep(_FAILURE_PAUSE)
                continue
            self._healthy = True
            for op in ops:
                if op.detached:
                    if not op.result:
                        _log.warning(
                            "settle_lease_lost",
                            queue=op.b,
                            message_id=op.c,
                            detail="the delivery's lease expired before it was settled; it was "
                            "redelivered",
                        )
                    continue
                op.done.set()
            for sub, op in claims:
                self._hand_over(sub, op)
            if outcome.ready:
                self._hints.send(outcome.peers, outcome.ready)
                self._dirty |= outcome.ready

    def _hand_over(self, sub: SqliteSubscription, op: Op) -> None:
        if op.error is not None:
            # The queue was deleted under us? Stop this subscription, with the reason.
            sub.stop()
            _log.error("subscription_failed", queue=sub.queue, error=str(op.error))
            return
        rows: list[Row]
        rows, later = op.result
        if len(rows) == op.b:
            self._dirty.add(sub.queue)  # maybe more where these came from
        if later is not None and (self._due is None or later < self._due):
            self._due = later
        for i, (row, exchange, envelope, body) in enumerate(rows):
            if not sub.claiming or self._closing:
                for left in rows[i:]:
                    self._ops.append(Op(UNCLAIM, left[0], sub.queue))
                self._wake.set()
                return
            d = SqliteDelivery(row, envelope, body, exchange, sub.queue, sub)
            if not sub.deliver(d):
                # The callback raised: requeue what it held, as redeliveries.
                for held in list(sub.unsettled):
                    self._ops.append(Op(REQUEUE, held.row, held.queue))
                sub.drop_all()
                for left in rows[i + 1 :]:
                    self._ops.append(Op(UNCLAIM, left[0], sub.queue))
                self._wake.set()
                return

    async def _heartbeat_loop(self) -> None:
        interval = self._opts.lease / 3
        while True:
            await anyio.sleep(interval)
            try:
                kept = await self.submit(Op(HEARTBEAT))
            except BrokerError:
                continue  # logged by the writer; the next heartbeat tries again
            if not kept:
                _log.warning(
                    "broker_lease_lost",
                    url=self.url,
                    detail="this process stalled longer than the lease; its unsettled "
                    "deliveries were redelivered, settling them now has no effect",
                )

    async def _hint_loop(self) -> None:
        while True:
            queues = await self._hints.receive()
            if ALL in queues:
                self._dirty.update(sub.queue for sub in self._subs)
            else:
                self._dirty |= queues
            self._wake.set()

    def cancelled(self, sub: SqliteSubscription) -> None:
        """Stop claiming for ``sub``; give up its single-active-consumer slot."""
        if not sub.unsettled and sub in self._subs:
            self._subs.remove(sub)
        if self._open and not self._closing:
            self._ops.append(Op(UNSUBSCRIBE, sub.key))
            self._wake.set()

    # -------------------------------------------------------------------- topology

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues (each with ``<queue>.dlq``) and bindings; idempotent.

        Raises:
            TopologyError: A queue or exchange exists with other arguments (the message names
                the argument and both values), or the default exchange is declared or bound.
            ExchangeNotFoundError: A binding names an undeclared exchange.
            QueueNotFoundError: A binding names an undeclared queue.
        """
        await self.submit(Op(DECLARE, topology))
        _log.debug(
            "topology_declared",
            exchanges=len(topology.exchanges),
            queues=len(topology.queues),
            bindings=len(topology.bindings),
        )

    # ------------------------------------------------------------------ publishing

    def _publish_op(self, message: OutboundMessage) -> Op:
        envelope = message.envelope
        limit = self._max_size
        if limit is not None and len(message.body) > limit:
            raise PublishTooLargeError(
                len(message.body),
                limit,
                f"exchange {message.exchange!r}, routing key {envelope.routing_key!r}, "
                f"message_id {envelope.message_id!r}",
            )
        try:
            raw = self._encode(envelope)
        except (NotImplementedError, TypeError, ValueError) as exc:
            raise PublishError(
                f"cannot store the envelope of message {envelope.message_id!r} (exchange "
                f"{message.exchange!r}, routing key {envelope.routing_key!r}): {exc}; header "
                "values must be str, int, float, bool, bytes, None, lists or mappings of them"
            ) from None
        return Op(
            PUBLISH,
            message.exchange,
            envelope.routing_key,
            (envelope.message_id, raw, message.body),
            message.mandatory,
        )

    async def publish(self, message: OutboundMessage) -> None:
        """Store one message in its queues; return once the transaction is on disk.

        Concurrent publishes (and settlements) share one transaction and one fsync.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue matched.
            ExchangeNotFoundError: The exchange was not declared.
            PublishTooLargeError: The body exceeds ``max_message_size``.
            BrokerConnectionError: Not entered.
            BrokerError: The file could not be written (full, read-only); names the path.
        """
        await self.submit(self._publish_op(message))

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Store several messages in one transaction; raise the first failure after all.

        Raises:
            BrokerError: The first failure (see :meth:`publish`); the others were stored.
        """
        await checkpoint()
        ops: list[Op] = []
        first: BrokerError | None = None
        for message in messages:
            try:
                ops.append(self._publish_op(message))
            except BrokerError as exc:
                first = first or exc
        if not self._open:
            raise BrokerConnectionError(
                self.url, "not connected; enter the broker first: 'async with broker:'"
            )
        self._ops.extend(ops)
        self._wake.set()
        for op in ops:
            await op.done.wait()
            if op.error is not None and first is None and isinstance(op.error, BrokerError):
                first = op.error
        if first is not None:
            raise first

    # ------------------------------------------------------------------- consuming

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> Subscription:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries.

        Competing consumers may be in this process or in other processes on the host; each
        message is leased to one of them at a time.

        Raises:
            QueueNotFoundError: The queue was not declared.
            ConfigurationError: ``prefetch`` is less than 1.
            BrokerConnectionError: Not entered.
        """
        if prefetch < 1:
            raise ConfigurationError(f"prefetch for queue {queue!r} must be >= 1, got {prefetch!r}")
        await self.submit(Op(CHECK, queue))
        sub = SqliteSubscription(self, queue, on_delivery, prefetch, next(self._keys))
        self._subs.append(sub)
        self._dirty.add(queue)
        self._wake.set()
        _log.debug("subscription_started", queue=queue, prefetch=prefetch)
        return sub

    async def get(self, queue: str) -> Delivery | None:
        """Lease the head of ``queue`` as a delivery to settle, or ``None`` if it is empty.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        rows: list[Row]
        rows, _ = await self.submit(Op(CLAIM, queue, 1, None))
        if not rows:
            return None
        row, exchange, envelope, body = rows[0]
        d = SqliteDelivery(row, envelope, body, exchange, queue, self._getter)
        self._getter.hold(d)
        return d

    async def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages (not leased, not waiting for a retry).

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        depth: int = await self.submit(Op(DEPTH, queue))
        return depth

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; return how many were deleted.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        count: int = await self.submit(Op(PURGE, queue))
        _log.info("queue_purged", queue=queue, count=count)
        return count
