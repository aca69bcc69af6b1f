"""The in-process broker: AMQP semantics with anyio only, and nothing to install.

:class:`MemoryBroker` is the default broker of ``actorbus run`` — a product feature, not a
test double. It routes through topic, direct and fanout exchanges and the default exchange,
keeps queues with competing consumers (round-robin), bounds unsettled deliveries by prefetch,
requeues, retries after a delay (driven by a :class:`~actorbus._clock.Clock`) and
dead-letters to ``<queue>.dlq``, exactly as the conformance suite in :mod:`actorbus.testing`
pins for every broker.

State and connections. A ``MemoryBroker`` instance is one *connection* to an in-process
*server* that holds the exchanges, queues and messages. ``memory://`` gets a private server;
``memory://<name>`` shares the server with every other open ``MemoryBroker`` of the same name
in the process (the server lives as long as one of them does). Closing a connection cancels
its subscriptions and requeues the deliveries it left unsettled, like closing an AMQP channel.

The hot path is synchronous: ``publish`` routes through a cached routing table and, when a
consumer has prefetch room, calls its ``on_delivery`` callback with a slotted delivery right
away — no task, lock, dict copy or log line per message.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import fields
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.lowlevel import checkpoint

from .._clock import Clock, SystemClock
from .._log import get_logger
from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    ExchangeNotFoundError,
    PublishNackedError,
    PublishTooLargeError,
    QueueNotFoundError,
    TopologyError,
    UnroutableError,
)
from ._protocol import (
    DEFAULT_EXCHANGE,
    XH_ATTEMPT,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Binding,
    Delivery,
    DeliveryCallback,
    ExchangeSpec,
    OutboundMessage,
    QueueSpec,
    Subscription,
    Topology,
    nearest_tier,
)
from ._routing import Router
from ._url import redact, scheme_of

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup

    from ..messages._envelope import Envelope

__all__ = ("MemoryBroker", "MemoryFaults")

_log = get_logger("actorbus.brokers", broker="memory")

#: Dead-letter reasons the broker itself records in ``XH_REASON``.
REASON_REJECTED = "rejected"
REASON_MAXLEN = "maxlen"
REASON_DELIVERY_LIMIT = "delivery-limit"


def _derive(
    envelope: Envelope,
    *,
    redelivered: bool,
    attempt: int,
    headers: Mapping[str, Any] | None = None,
) -> Envelope:
    """Copy an envelope with new delivery state; published envelopes are never mutated."""
    new = copy.copy(envelope)
    new.redelivered = redelivered
    new.attempt = attempt
    if headers is not None:
        new.headers = headers
    return new


#: Publishes between two yields to the event loop (see MemoryBroker.publish).
_FAIR_PUBLISHES = 32


def _retry_tier(delays: tuple[float, ...], delay: float) -> float:
    """Return the tier nearest to ``delay`` (``delay`` itself without tiers)."""
    return nearest_tier(delays, delay) if delays else delay


class _MemoryDelivery:
    """One message in a queue, and once dispatched, a delivery to settle exactly once.

    Created once per message and queue when routed; one per message on the hot path, so
    slotted (about 100 bytes instead of about 300 with a ``__dict__``).
    """

    __slots__ = ("_owner", "_q", "_settled", "body", "envelope", "exchange")

    def __init__(self, envelope: Envelope, body: bytes, exchange: str, q: _Queue) -> None:
        self.envelope = envelope
        self.body = body
        self.exchange = exchange
        self._q = q
        self._owner: _Owner | None = None
        self._settled = False

    @property
    def queue(self) -> str:
        """The queue it was consumed from."""
        return self._q.name

    def __repr__(self) -> str:
        state = "settled" if self._settled else "unsettled"
        return f"<MemoryDelivery queue={self.queue!r} {self.envelope!r} {state}>"

    def _release(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        owner = self._owner
        if owner is not None:
            owner.unsettled.pop(self, None)
        server = self._q.server
        if server.changed is not None:
            server.notify()
        return True

    async def ack(self) -> None:
        """Confirm that the message was processed; the broker forgets it."""
        if self._settled:
            return
        self._settled = True
        owner = self._owner
        if owner is not None:
            del owner.unsettled[self]
        q = self._q
        if q.ready and q.consumers:
            q.dispatch()
        if q.server.changed is not None:
            q.server.notify()

    async def nack(self, *, requeue: bool = True) -> None:
        """Requeue the message at the head of its queue (redelivered), or dead-letter it.

        Args:
            requeue: ``False`` dead-letters with reason ``rejected``.
        """
        if not self._release():
            return
        q = self._q
        if requeue:
            q.requeue_front((self,))
            q.dispatch()
        else:
            q.dead_letter(self, {XH_REASON: REASON_REJECTED})

    async def retry(self, delay: float, headers: Mapping[str, Any] | None = None) -> None:
        """Put the message back at the tail of its queue after ``delay`` seconds.

        The delay is rounded up to the queue's retry tier (see ``QueueSpec.retry_delays``)
        and measured with the broker's clock. The message comes back with ``attempt``
        increased by one, also recorded in the ``XH_ATTEMPT`` header.
        """
        if not self._release():
            return
        q = self._q
        attempt = self.envelope.attempt + 1
        merged = dict(self.envelope.headers)
        if headers:
            merged.update(headers)
        merged[XH_ATTEMPT] = attempt
        again = _MemoryDelivery(
            _derive(self.envelope, redelivered=False, attempt=attempt, headers=merged),
            self.body,
            self.exchange,
            q,
        )
        wait = _retry_tier(q.spec.retry_delays, delay)
        owner = self._owner
        conn = owner.conn if owner is not None else None
        if wait <= 0 or conn is None or not conn.schedule(again, wait):
            q.put(again)

    async def dead_letter(self, headers: Mapping[str, Any]) -> None:
        """Move the message to ``<queue>.dlq`` with ``headers`` and its origin recorded."""
        if self._release():
            self._q.dead_letter(self, headers)


class _Owner:
    """Whoever holds unsettled deliveries: a subscription, or ``get`` of a connection."""

    __slots__ = ("conn", "prefetch", "unsettled")

    def __init__(self, conn: MemoryBroker, prefetch: float) -> None:
        self.conn = conn
        self.prefetch = prefetch
        # Insertion-ordered: requeued in the order they were delivered.
        self.unsettled: dict[_MemoryDelivery, None] = {}

    def take_unsettled(self) -> list[_MemoryDelivery]:
        """Mark every unsettled delivery settled (later settling is a no-op); return them."""
        taken = list(self.unsettled)
        self.unsettled.clear()
        for d in taken:
            d._settled = True
        return taken


class _MemorySubscription(_Owner):
    """A consumer on one queue, with at most ``prefetch`` unsettled deliveries."""

    __slots__ = ("_cancelled", "_failed", "_q", "callback", "queue")

    def __init__(
        self, conn: MemoryBroker, q: _Queue, callback: DeliveryCallback, prefetch: int
    ) -> None:
        super().__init__(conn, prefetch)
        self.queue = q.name
        self.callback = callback
        self._q = q
        self._cancelled = False
        self._failed = False

    def __repr__(self) -> str:
        return (
            f"<MemorySubscription queue={self.queue!r} prefetch={self.prefetch} "
            f"unsettled={len(self.unsettled)} active={self.active}>"
        )

    @property
    def active(self) -> bool:
        """Whether deliveries are flowing: not cancelled, not failed, connection up."""
        conn = self.conn
        return not (self._cancelled or self._failed or conn._dropped or not conn._open)

    @property
    def failed(self) -> bool:
        """Whether the subscription stopped because its callback raised."""
        return self._failed

    async def cancel(self) -> None:
        """Stop receiving new deliveries; deliveries in flight may still be settled."""
        await checkpoint()
        if self._cancelled:
            return
        self._cancelled = True
        self._q.remove_consumer(self)
        if not self.unsettled and self in self.conn._subs:
            self.conn._subs.remove(self)
        _log.debug("subscription_cancelled", queue=self.queue)

    def fail(self, exc: Exception) -> None:
        """Stop this consumer after its callback raised; requeue what it held."""
        self._failed = True
        self._q.remove_consumer(self)
        self._q.requeue_front(self.take_unsettled())
        _log.error(
            "delivery_callback_failed",
            queue=self.queue,
            error=f"{type(exc).__name__}: {exc}",
            remedy="on_delivery must not raise; the subscription was stopped and its "
            "unsettled deliveries requeued",
            exc_info=exc,
        )


class _Queue:
    """A queue of a memory server: ready messages and the consumers competing for them."""

    __slots__ = (
        "auto",
        "consumers",
        "delivery_limit",
        "max_length",
        "name",
        "ready",
        "rr",
        "server",
        "single_active",
        "spec",
    )

    def __init__(self, spec: QueueSpec, server: _Server, *, auto: bool = False) -> None:
        self.name = spec.name
        self.server = server
        self.ready: deque[_MemoryDelivery] = deque()
        self.consumers: list[_MemorySubscription] = []
        self.rr = 0
        self.auto = auto
        self.spec = spec
        self.single_active = spec.single_active_consumer
        self.max_length = spec.max_length
        self.delivery_limit = spec.delivery_limit

    def adopt(self, spec: QueueSpec) -> None:
        """Take over an explicitly declared spec (for an automatically created DLQ)."""
        self.spec = spec
        self.auto = False
        self.single_active = spec.single_active_consumer
        self.max_length = spec.max_length
        self.delivery_limit = spec.delivery_limit

    def put(self, d: _MemoryDelivery) -> None:
        """Append a message; hand it to a consumer at once if one has room."""
        ready = self.ready
        ready.append(d)
        if self.server.changed is not None:
            self.server.notify()
        if self.consumers:
            self.dispatch()
        if self.max_length is not None:
            while len(ready) > self.max_length:
                # RabbitMQ's default overflow: drop (dead-letter) from the head.
                old = ready.popleft()
                old._settled = True
                self.dead_letter(old, {XH_REASON: REASON_MAXLEN})

    def dispatch(self) -> None:
        """Hand ready messages to consumers with prefetch room, round-robin."""
        ready = self.ready
        consumers = self.consumers
        duplicates = self.server.duplicates
        while ready and consumers:
            n = 1 if self.single_active else len(consumers)
            if n == 1:
                sub = consumers[0]
                if len(sub.unsettled) >= sub.prefetch:
                    return
            else:
                start = self.rr
                for k in range(n):
                    sub = consumers[(start + k) % n]
                    if len(sub.unsettled) < sub.prefetch:
                        self.rr = start + k + 1
                        break
                else:
                    return
            d = ready.popleft()
            d._owner = sub
            sub.unsettled[d] = None
            if duplicates:
                duplicates = self.server.duplicate(self, d)
            try:
                sub.callback(d)
            except Exception as exc:
                sub.fail(exc)

    def requeue_front(self, deliveries: Sequence[_MemoryDelivery]) -> None:
        """Put settled-by-force deliveries back at the head, in order, as redeliveries."""
        limit = self.delivery_limit
        again: list[_MemoryDelivery] = []
        for d in deliveries:
            if limit is not None and d.envelope.attempt > limit:
                self.dead_letter(d, {XH_REASON: REASON_DELIVERY_LIMIT})
                continue
            env = _derive(d.envelope, redelivered=True, attempt=d.envelope.attempt + 1)
            again.append(_MemoryDelivery(env, d.body, d.exchange, self))
        self.ready.extendleft(reversed(again))

    def remove_consumer(self, sub: _MemorySubscription) -> None:
        """Detach a consumer (cancel, failure, lost connection); its deliveries stay."""
        if sub in self.consumers:
            self.consumers.remove(sub)

    def dead_letter(self, d: _MemoryDelivery, headers: Mapping[str, Any]) -> None:
        """Copy a settled message to this queue's DLQ, recording where it came from."""
        dlq = self.server.queues.get(self.spec.dlq_name) if self.spec.dead_letter else None
        env = d.envelope
        if dlq is None:
            _log.warning(
                "message_discarded",
                queue=self.name,
                message_id=env.message_id,
                reason=headers.get(XH_REASON),
                detail="the queue has no dead-letter queue (dead_letter=False)",
            )
            return
        merged = dict(env.headers)
        merged.update(headers)
        merged.setdefault(XH_ORIGINAL_EXCHANGE, d.exchange)
        merged.setdefault(XH_ORIGINAL_ROUTING_KEY, env.routing_key)
        merged[XH_ORIGINAL_QUEUE] = self.name
        dead = _derive(env, redelivered=False, attempt=env.attempt, headers=merged)
        dlq.put(_MemoryDelivery(dead, d.body, d.exchange, dlq))


class _Server:
    """Exchanges, queues and messages: what a RabbitMQ node holds, shared by connections."""

    __slots__ = (
        "__weakref__",
        "changed",
        "duplicates",
        "exchanges",
        "name",
        "queues",
        "routers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.exchanges: dict[str, ExchangeSpec] = {}
        self.routers: dict[str, Router[_Queue]] = {}
        self.queues: dict[str, _Queue] = {}
        self.duplicates = 0
        # Set when a message is queued or settled, and only while someone waits for that
        # (MemoryBroker.wait_for_change): otherwise the hot path pays one attribute check.
        self.changed: anyio.Event | None = None

    def notify(self) -> None:
        """Wake whoever waits for a change of any queue of this server."""
        changed, self.changed = self.changed, None
        if changed is not None:
            changed.set()

    def duplicate(self, q: _Queue, d: _MemoryDelivery) -> int:
        """Fault injection: put a redelivered copy of ``d`` at the head of ``q``."""
        self.duplicates -= 1
        env = _derive(d.envelope, redelivered=True, attempt=d.envelope.attempt + 1)
        q.ready.appendleft(_MemoryDelivery(env, d.body, d.exchange, q))
        return self.duplicates

    def declare(self, topology: Topology) -> None:
        for exchange in topology.exchanges:
            self._declare_exchange(exchange)
        for queue in topology.queues:
            self._declare_queue(queue)
        for binding in topology.bindings:
            self._bind(binding)

    def _declare_exchange(self, spec: ExchangeSpec) -> None:
        if spec.name == DEFAULT_EXCHANGE:
            raise TopologyError(
                "the default exchange '' cannot be declared: it exists implicitly and routes "
                "by queue name; remove it from the topology"
            )
        existing = self.exchanges.get(spec.name)
        if existing is None:
            self.exchanges[spec.name] = spec
            self.routers[spec.name] = Router(spec.type)
            return
        for f in fields(ExchangeSpec):
            old, new = getattr(existing, f.name), getattr(spec, f.name)
            if old != new:
                raise TopologyError(
                    f"exchange {spec.name!r} already exists with {f.name}={old!r}; cannot "
                    f"redeclare it with {f.name}={new!r}. Declare it with the same arguments, "
                    "or use a new exchange name"
                )

    def _declare_queue(self, spec: QueueSpec) -> None:
        existing = self.queues.get(spec.name)
        if existing is None:
            self.queues[spec.name] = _Queue(spec, self)
        elif existing.auto:
            existing.adopt(spec)
        else:
            for f in fields(QueueSpec):
                old, new = getattr(existing.spec, f.name), getattr(spec, f.name)
                if old != new:
                    raise TopologyError(
                        f"queue {spec.name!r} already exists with {f.name}={old!r}; cannot "
                        f"redeclare it with {f.name}={new!r}. Declare it with the same "
                        "arguments, or use a new queue name (a broker keeps a queue's "
                        "arguments for its lifetime)"
                    )
        if spec.dead_letter and spec.dlq_name not in self.queues:
            dlq = QueueSpec(
                spec.dlq_name,
                durable=spec.durable,
                queue_type=spec.queue_type,
                dead_letter=False,
                retry_delays=(),
            )
            self.queues[dlq.name] = _Queue(dlq, self, auto=True)

    def _bind(self, binding: Binding) -> None:
        if binding.exchange == DEFAULT_EXCHANGE:
            raise TopologyError(
                f"cannot bind queue {binding.queue!r} to the default exchange '': it routes "
                "by queue name already; bind to a declared exchange instead"
            )
        router = self.routers.get(binding.exchange)
        if router is None:
            raise ExchangeNotFoundError(binding.exchange, binding.routing_key)
        q = self.queues.get(binding.queue)
        if q is None:
            raise QueueNotFoundError(binding.queue)
        router.bind(binding.routing_key, q)


_SERVERS: weakref.WeakValueDictionary[str, _Server] = weakref.WeakValueDictionary()


def _server_for(name: str) -> _Server:
    if not name:
        return _Server("")
    server = _SERVERS.get(name)
    if server is None:
        server = _Server(name)
        _SERVERS[name] = server
    return server


class MemoryFaults:
    """Fault injection for tests: refused publishes, a lost connection, duplicates.

    Reached as ``broker.faults``. Armed faults cost the hot path one attribute check.
    """

    __slots__ = ("_broker",)

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker

    @property
    def connection_dropped(self) -> bool:
        """Whether :meth:`drop_connection` is in effect."""
        return self._broker._dropped

    @property
    def pending_publish_failures(self) -> int:
        """How many of the next publishes will still be refused."""
        return self._broker._fail_publishes

    def fail_next_publishes(self, count: int = 1) -> None:
        """Make the next ``count`` publishes raise :class:`PublishNackedError` (not stored).

        In ``publish_batch`` every message counts as one publish.
        """
        if count < 0:
            raise ConfigurationError(f"count must be >= 0, got {count!r}")
        self._broker._fail_publishes += count
        self._broker._update_guard()

    def drop_connection(self) -> None:
        """Lose the connection until :meth:`restore`.

        Subscriptions become inactive and ``is_ready`` false; their unsettled deliveries are
        requeued as redeliveries (settling them later is a no-op, as their ack would be lost
        with a real connection); every operation but settling and cancelling raises
        :class:`BrokerConnectionError`. Messages delayed for retry keep waiting.
        """
        self._broker._drop()

    def restore(self) -> None:
        """Reconnect after :meth:`drop_connection`: subscriptions resume consuming."""
        self._broker._restore()

    def duplicate_next_deliveries(self, count: int = 1) -> None:
        """Deliver each of the next ``count`` dispatched messages twice.

        The copy is a redelivery (``redelivered=True``, ``attempt`` + 1) put at the head of
        the queue, as if the first delivery's ack had been lost: what consumers' inboxes
        exist to absorb. Applies to the server, whichever connection consumes.
        """
        if count < 0:
            raise ConfigurationError(f"count must be >= 0, got {count!r}")
        self._broker._server.duplicates += count

    def reset(self) -> None:
        """Disarm every fault and restore a dropped connection."""
        broker = self._broker
        broker._fail_publishes = 0
        broker._server.duplicates = 0
        if broker._dropped:
            broker._restore()
        broker._update_guard()


class MemoryBroker:
    """The in-process broker with AMQP semantics; see the module docstring.

    Example::

        async with MemoryBroker() as broker:
            await broker.declare(topology)
            sub = await broker.consume("inventory.queue", on_delivery, prefetch=50)

    Args:
        url: ``memory://`` for a private server, ``memory://<name>`` to share one server with
            every other open broker of that name in this process.
        clock: Measures retry delays; the system clock by default, a manual clock in tests.
        max_message_size: Refuse bodies larger than this many bytes with
            :class:`~actorbus.exceptions.PublishTooLargeError`; ``None`` for no limit.

    Raises:
        ConfigurationError: ``url`` is not a ``memory://`` URL, or a bad option.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Clock | None = None,
        max_message_size: int | None = None,
    ) -> None:
        scheme = scheme_of(url)
        if scheme != "memory":
            raise ConfigurationError(
                f"MemoryBroker needs a 'memory://' URL, got {redact(url)!r}; "
                "use actorbus.brokers.connect(url) to pick the broker by scheme"
            )
        if max_message_size is not None and max_message_size < 1:
            raise ConfigurationError(
                f"max_message_size must be a positive number of bytes or None, "
                f"got {max_message_size!r}"
            )
        name = url.partition("://")[2].partition("?")[0].strip("/")
        self._url = redact(url)
        self._server = _server_for(name)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._max_size = max_message_size
        self._open = False
        self._dropped = False
        self._fail_publishes = 0
        self._unyielded = 0
        # The hot path checks only this: not open, dropped, faults armed or a size limit.
        self._guarded = True
        self._tg: TaskGroup | None = None
        self._subs: list[_MemorySubscription] = []
        self._getter = _Owner(self, math.inf)
        self._pending: dict[_MemoryDelivery, None] = {}
        self.faults = MemoryFaults(self)

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        return f"<MemoryBroker {self._url!r} {state}>"

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The broker's URL (credentials redacted; a memory URL has none)."""
        return self._url

    @property
    def clock(self) -> Clock:
        """The clock that measures retry delays."""
        return self._clock

    @property
    def is_ready(self) -> bool:
        """Entered, connection not dropped, and no subscription stopped by a failure."""
        if not self._open or self._dropped:
            return False
        return not any(sub._failed for sub in self._subs)

    # ------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        """Connect: start the task group that runs delayed retries.

        Raises:
            BrokerError: The broker is already entered.
        """
        if self._open:
            raise BrokerError(f"broker {self._url} is already entered; enter it only once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._open = True
        self._dropped = False
        self._update_guard()
        _log.info("broker_connected", url=self._url, server=self._server.name or None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close: cancel subscriptions, requeue unsettled deliveries, release delayed retries.

        Messages still waiting for a retry delay are put back at the tail of their queue at
        once, so the server keeps every message.
        """
        if not self._open:
            return
        self._open = False
        self._update_guard()
        touched: dict[_Queue, None] = {}
        requeued = self._requeue_held(touched, forget=True)
        for d in self._pending:
            d._q.ready.append(d)
            touched[d._q] = None
        released = len(self._pending)
        self._pending.clear()
        for q in touched:
            q.dispatch()
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            # The timers' task group only runs retry delays: the caller's exception is the
            # caller's to raise, not something to wrap into an ExceptionGroup here.
            await tg.__aexit__(None, None, None)
        _log.info("broker_closed", url=self._url, requeued=requeued, retries_released=released)

    def _requeue_held(self, touched: dict[_Queue, None], *, forget: bool) -> int:
        """Detach every subscription and requeue every unsettled delivery of this connection.

        Args:
            touched: Collects the queues that got messages back.
            forget: Drop the subscriptions (close) rather than keep them for a restore.
        """
        count = 0
        owners: list[_Owner] = [*self._subs, self._getter]
        for owner in owners:
            if isinstance(owner, _MemorySubscription):
                owner._q.remove_consumer(owner)
                if forget:
                    owner._cancelled = True
            by_queue: dict[_Queue, list[_MemoryDelivery]] = {}
            for d in owner.take_unsettled():
                by_queue.setdefault(d._q, []).append(d)
            for q, held in by_queue.items():
                q.requeue_front(held)
                touched[q] = None
                count += len(held)
        if forget:
            self._subs.clear()
        return count

    def _update_guard(self) -> None:
        self._guarded = (
            not self._open
            or self._dropped
            or self._fail_publishes > 0
            or self._max_size is not None
        )

    def _check_connected(self) -> None:
        if not self._open:
            raise BrokerConnectionError(
                self._url, "not connected; enter the broker first: 'async with broker:'"
            )
        if self._dropped:
            raise BrokerConnectionError(self._url, "connection lost (injected fault)")

    def _drop(self) -> None:
        if self._dropped or not self._open:
            return
        self._dropped = True
        self._update_guard()
        touched: dict[_Queue, None] = {}
        requeued = self._requeue_held(touched, forget=False)
        for q in touched:
            q.dispatch()
        _log.warning("broker_connection_dropped", url=self._url, requeued=requeued)

    def _restore(self) -> None:
        if not self._dropped:
            return
        self._dropped = False
        self._update_guard()
        for sub in self._subs:
            if not sub._cancelled and not sub._failed:
                sub._q.consumers.append(sub)
        for sub in self._subs:
            sub._q.dispatch()
        _log.info("broker_connection_restored", url=self._url)

    # ---------------------------------------------------------------- introspection

    @property
    def pending_retries(self) -> int:
        """Messages waiting out a retry delay (held by the broker, not by any consumer)."""
        return len(self._pending)

    def queue_statistics(self) -> dict[str, tuple[int, int, int]]:
        """Return ``{queue: (ready, unsettled, consumers)}`` for every queue of the server."""
        stats: dict[str, tuple[int, int, int]] = {}
        for name, q in self._server.queues.items():
            unsettled = sum(len(c.unsettled) for c in q.consumers)
            stats[name] = (len(q.ready), unsettled, len(q.consumers))
        return stats

    async def wait_for_change(self) -> None:
        """Wait until a message is queued or settled anywhere on this broker's server, or a
        retry's delay ends (its message is queued then)."""
        server = self._server
        if server.changed is None:
            server.changed = anyio.Event()
        await server.changed.wait()

    def is_idle(self) -> bool:
        """Whether nothing is left to do: no consumed queue holds a ready or unsettled message,
        and no retry is pending. Queues nobody consumes (dead-letter queues) do not count."""
        if self._pending:
            return False
        for q in self._server.queues.values():
            if q.consumers and (q.ready or any(c.unsettled for c in q.consumers)):
                return False
        return True

    def schedule(self, d: _MemoryDelivery, delay: float) -> bool:
        """Put ``d`` into its queue after ``delay`` on the clock; ``False`` if closed."""
        tg = self._tg
        if tg is None:
            return False
        self._pending[d] = None
        tg.start_soon(self._put_later, d, delay)
        return True

    async def _put_later(self, d: _MemoryDelivery, delay: float) -> None:
        await self._clock.sleep(delay)
        if d in self._pending:
            del self._pending[d]
            d._q.put(d)

    # -------------------------------------------------------------------- topology

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues (each with ``<queue>.dlq``) and bindings; idempotent.

        Raises:
            TopologyError: A queue or exchange exists with other arguments (the message names
                the argument and both values), or the default exchange is declared or bound.
            ExchangeNotFoundError: A binding names an undeclared exchange.
            QueueNotFoundError: A binding names an undeclared queue.
        """
        await checkpoint()
        self._check_connected()
        self._server.declare(topology)
        _log.debug(
            "topology_declared",
            exchanges=len(topology.exchanges),
            queues=len(topology.queues),
            bindings=len(topology.bindings),
        )

    # ------------------------------------------------------------------ publishing

    async def publish(self, message: OutboundMessage) -> None:
        """Route one message to its queues; it is confirmed when this returns.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue matched.
            ExchangeNotFoundError: The exchange was not declared.
            PublishNackedError: Refused by an injected fault.
            PublishTooLargeError: The body exceeds ``max_message_size``.
            BrokerConnectionError: Not entered, or the connection was dropped.
        """
        # Routing is synchronous: like a put into a queue with room, a publish need not wait.
        # It yields to the event loop every _FAIR_PUBLISHES calls, so that a publishing loop
        # cannot starve the consumers, and otherwise lets them take a burst at once: one
        # event-loop turn per message was most of the cost of a publish → handle → ack.
        self._unyielded += 1
        if self._unyielded >= _FAIR_PUBLISHES:
            self._unyielded = 0
            await checkpoint()
        self._route(message)

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Route several messages; raise the first failure after trying every one.

        Raises:
            BrokerError: The first failure (see :meth:`publish`); the others were routed.
        """
        await checkpoint()
        first: BrokerError | None = None
        route = self._route
        for message in messages:
            try:
                route(message)
            except BrokerError as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def _route(self, message: OutboundMessage) -> None:
        if self._guarded:
            self._check_publish(message)
        exchange = message.exchange
        envelope = message.envelope
        key = envelope.routing_key
        server = self._server
        if exchange:
            router = server.routers.get(exchange)
            if router is None:
                raise ExchangeNotFoundError(exchange, key)
            targets = router.route(key)
            if targets:
                body = message.body
                for q in targets:
                    q.put(_MemoryDelivery(envelope, body, exchange, q))
                return
        else:
            target = server.queues.get(key)
            if target is not None:
                target.put(_MemoryDelivery(envelope, message.body, exchange, target))
                return
        if message.mandatory:
            raise UnroutableError(exchange, key, envelope.message_id)

    def _check_publish(self, message: OutboundMessage) -> None:
        self._check_connected()
        envelope = message.envelope
        if self._fail_publishes > 0:
            self._fail_publishes -= 1
            self._update_guard()
            raise PublishNackedError(message.exchange, envelope.routing_key, envelope.message_id)
        limit = self._max_size
        if limit is not None and len(message.body) > limit:
            raise PublishTooLargeError(
                len(message.body),
                limit,
                f"exchange {message.exchange!r}, routing key {envelope.routing_key!r}, "
                f"message_id {envelope.message_id!r}",
            )

    # ------------------------------------------------------------------- consuming

    def _queue(self, name: str) -> _Queue:
        q = self._server.queues.get(name)
        if q is None:
            raise QueueNotFoundError(name)
        return q

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> Subscription:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries.

        Deliveries start flowing after this returns (at the next checkpoint, or at once
        for messages published afterwards).

        Raises:
            QueueNotFoundError: The queue was not declared.
            ConfigurationError: ``prefetch`` is less than 1.
            BrokerConnectionError: Not entered, or the connection was dropped.
        """
        await checkpoint()
        self._check_connected()
        if prefetch < 1:
            raise ConfigurationError(f"prefetch for queue {queue!r} must be >= 1, got {prefetch!r}")
        q = self._queue(queue)
        sub = _MemorySubscription(self, q, on_delivery, prefetch)
        self._subs.append(sub)
        q.consumers.append(sub)
        if q.ready and self._tg is not None:
            self._tg.start_soon(self._kick, q)
        _log.debug("subscription_started", queue=queue, prefetch=prefetch)
        return sub

    @staticmethod
    async def _kick(q: _Queue) -> None:
        q.dispatch()

    async def get(self, queue: str) -> Delivery | None:
        """Take the head of ``queue`` as a delivery to settle, or ``None`` if it is empty.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        q = self._queue(queue)
        if not q.ready:
            return None
        d = q.ready.popleft()
        d._owner = self._getter
        self._getter.unsettled[d] = None
        return d

    async def queue_depth(self, queue: str) -> int:
        """Return the number of ready messages (not unsettled, not waiting for a retry).

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        return len(self._queue(queue).ready)

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; return how many were deleted.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        await checkpoint()
        self._check_connected()
        q = self._queue(queue)
        count = len(q.ready)
        for d in q.ready:
            d._settled = True
        q.ready.clear()
        _log.info("queue_purged", queue=queue, count=count)
        return count
