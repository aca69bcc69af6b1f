"""The durable consumer path: identity → inbox claim → handler → outbox, one unit per delivery.

Used for a service when its App has a store (``Service(durable=None)``, the default) and
decided once, at start-up: the in-memory path of :mod:`._pipeline` is not touched. Per
delivery (docs/concepts.md; "at-least-once, then idempotent"):

1. **Identity**: the payload's top-level ``eventId``. Decoding already refused a payload
   without one (a ``DecodeError`` at ``$.eventId``, dead-lettered as ``decode-error`` like
   on the in-memory path: identity is never invented, and a transport ``message_id`` does
   not stand in for it). The key is read from the body by :data:`_IDENTITY`, a one-field
   msgspec decoder that skips everything else (~0.45 µs for a 312-byte event, next to
   ~1.5 µs for its typed decode, measured with timeit on the development machine; not paid
   on the in-memory path), not from the decoded message, which an upcaster rebuilt. A
   codec that does not read JSON leaves only the transport ``message_id``; with neither,
   the delivery is dead-lettered (``no-identity``) and its handler never runs.
2. ``async with store.transaction(wait=False) as tx``: ``tx.inbox.claim(queue, key)``; a
   duplicate runs nothing. Otherwise the handler runs with ``ctx.tx``; what it publishes is
   written to ``tx.outbox`` in the same unit. A handler error rolls back this unit alone.
3. The unit is handed to the pipeline's :class:`Settler`, which waits for COMMITs in order and
   acks; the consumer takes its next delivery meanwhile, so deliveries that queue up while a
   COMMIT is in flight share the next one (group commit).
4. A store failure (unavailable, or a failed COMMIT) is never acked: the delivery is nacked
   with requeue, the App's :class:`StoreHealth` turns not ready, and consumers wait for it to
   come back (no hot redelivery loop) before taking the next delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from .._backoff import Backoff
from .._log import get_logger
from ..brokers import Broker, Delivery
from ..exceptions import (
    MessageError,
    NoIdentityError,
    RejectMessage,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
    StoreUsageError,
    UnknownMessageTypeError,
    UnsupportedContentTypeError,
)
from ..messages import SCHEMA_VERSION_HEADER, MessageRegistry
from ..observe import CURRENT_TRACE, LOG_TRACE_ID, consumer_context
from ._context import HandlerContext, ServiceContext
from ._outgoing import Outgoing
from ._pipeline import (
    _ACCEPTED,
    _JSON,
    _LOG_CAUSATION_ID,
    _LOG_CORRELATION_ID,
    _SPANS,
    _W3C,
    Pipeline,
    _clock,
)
from ._service import Service

if TYPE_CHECKING:
    from ..observe import QueueMetrics, Span, Tracer, TypeMetrics
    from ..stores import Store, Transaction

__all__ = ("DurablePipeline", "Settler", "StoreHealth", "message_identity")

_log = get_logger("actorbus.app")


class _Identity(msgspec.Struct, gc=False):
    """The one field of a payload a durable consumer deduplicates by."""

    eventId: str | None = None  # the wire name


_IDENTITY = msgspec.json.Decoder(_Identity)


def message_identity(body: bytes, transport_id: str) -> str:
    """Return the key a delivery is deduplicated by: ``eventId``, else ``transport_id``.

    An empty ``eventId`` counts as none; ``""`` is returned when there is no identity at all
    (the caller dead-letters the delivery: a key is never made up).
    """
    try:
        event_id = _IDENTITY.decode(body).eventId
    except (msgspec.DecodeError, msgspec.ValidationError):
        event_id = None
    return event_id or transport_id


# The errors that mean "the database is not there", as opposed to a failing statement.
_STORE_DOWN = (StoreUnavailableError, StoreClosedError)


class StoreHealth:
    """Whether the App's store works, as a flag: what readiness and the consumers look at.

    No round trip per readiness probe: the flag turns false when a delivery, a COMMIT or the
    relay meets an unavailable store, and true again once :meth:`run` (pinging with backoff
    while it is down) gets an answer. An idle App notices an outage within the relay's poll
    interval (its ``claim`` is a query).

    Args:
        store: The store watched.
    """

    __slots__ = ("_backoff", "_down", "_store", "_up", "ok")

    def __init__(self, store: Store, backoff: Backoff | None = None) -> None:
        self._store = store
        self.ok = True
        self._up = anyio.Event()
        self._up.set()
        self._down = anyio.Event()
        self._backoff = backoff or Backoff(initial=0.05, factor=2.0, maximum=2.0, jitter=0.1)

    def failed(self, exc: BaseException, where: str) -> None:
        """Record that the store failed (logged once per outage, with the redacted URL)."""
        if not self.ok:
            return
        self.ok = False
        self._up = anyio.Event()
        self._down.set()
        _log.warning("store_unavailable", store=self._store.url, where=where, error=str(exc))

    async def wait_up(self) -> None:
        """Return once the store answers again (at once if it does)."""
        while not self.ok:
            await self._up.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Ping the store while it is down, with backoff; mark it up when it answers."""
        task_status.started()
        while True:
            await self._down.wait()
            self._down = anyio.Event()
            attempt = 1
            while True:
                await anyio.sleep(self._backoff.delay(attempt))
                try:
                    await self._store.ping()
                except Exception as exc:  # still down: keep trying (logged at debug only)
                    _log.debug("store_ping_failed", store=self._store.url, error=str(exc))
                    attempt += 1
                    continue
                break
            self.ok = True
            self._up.set()
            _log.info("store_recovered", store=self._store.url, attempts=attempt)


class Settler:
    """Waits for the COMMITs of a pipeline's units, in order, and settles their deliveries.

    The consumer hands over ``(tx, delivery, metrics)`` without waiting; the units handed over
    while a COMMIT is in flight form the next batch of the store's group commit.
    """

    __slots__ = ("_done", "_health", "_pipeline", "_receive", "_send", "send_nowait")

    def __init__(self, pipeline: DurablePipeline, health: StoreHealth, size: int) -> None:
        send, receive = anyio.create_memory_object_stream[
            tuple["Transaction", Delivery, "TypeMetrics | None"]
        ](size)
        self._send = send
        self._receive = receive
        self.send_nowait = send.send_nowait
        self._pipeline = pipeline
        self._health = health
        self._done = anyio.Event()

    async def send(self, item: tuple[Transaction, Delivery, TypeMetrics | None]) -> None:
        """Hand over a unit (waits only if ``size`` units are already waiting)."""
        await self._send.send(item)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Settle what is handed over until :meth:`close`; then return."""
        task_status.started()
        try:
            async with self._receive:
                async for tx, delivery, metrics in self._receive:
                    try:
                        await tx.wait_committed()
                    except StoreError as exc:
                        await self._pipeline.store_failed(delivery, exc, "commit")
                        continue
                    try:
                        await delivery.ack()
                    except Exception as exc:  # the broker is gone: it redelivers; the inbox
                        _log.debug("ack_failed", queue=delivery.queue, error=str(exc))
                        continue
                    if metrics is not None:
                        metrics.acked += 1
        finally:
            self._done.set()

    async def close(self) -> None:
        """Stop taking units; wait until those handed over are settled."""
        self._send.close()
        await self._done.wait()


class DurablePipeline(Pipeline):
    """A :class:`Pipeline` whose deliveries are handled in store transactions.

    Args:
        store: The App's store (entered).
        health: The store's health flag, shared by the App.
        others: As for :class:`Pipeline` (without an inbox: the store's inbox is used).
    """

    __slots__ = ("_health", "_settler", "_store", "_transaction")

    def __init__(
        self,
        service: Service,
        registry: MessageRegistry,
        broker: Broker,
        outgoing: Outgoing,
        context: ServiceContext,
        store: Store,
        health: StoreHealth,
        *,
        tracer: Tracer | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        super().__init__(
            service, registry, broker, None, outgoing, context, tracer=tracer, metrics=metrics
        )
        self._store = store
        self._transaction = store.transaction
        self._health = health
        # Each consumer holds at most ``prefetch`` unsettled deliveries: the hand-over never
        # blocks in practice.
        self._settler = Settler(self, health, service.prefetch * service.concurrency)

    @property
    def settler(self) -> Settler:
        """The task that waits for COMMITs and acks (run by the App)."""
        return self._settler

    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery in a unit of work; hand it to the settler to be acked."""
        health = self._health
        if not health.ok:  # the store is down: hold this delivery until it is back
            await health.wait_up()
        env = delivery.envelope
        mode = self._trace_mode
        span: Span | None = None
        if mode == _W3C:
            trace = consumer_context(env.headers)
            trace_token = CURRENT_TRACE.set(trace)
            log_token = LOG_TRACE_ID.set(trace.trace_id)
        elif mode == _SPANS:
            span = self._tracer.start_consumer(  # type: ignore[union-attr]
                env, self._service, self.queue
            )
        try:
            route = self._routes.get(env.type)
            if route is None:
                unknown = None if self._metrics is None else self._metrics.unknown
                if unknown is not None:
                    unknown.consumed += 1
                await self._dead_letter(
                    delivery, UnknownMessageTypeError(env.type, self._routes), unknown
                )
                return
            metrics = route.metrics
            if metrics is not None:
                metrics.consumed += 1
            content_type = env.content_type
            if content_type not in _ACCEPTED and not content_type.startswith(_JSON):
                await self._dead_letter(
                    delivery, UnsupportedContentTypeError(content_type), metrics
                )
                return
            body = delivery.body
            headers: Mapping[str, Any] = env.headers
            try:
                version = headers.get(SCHEMA_VERSION_HEADER) if headers else None
                message = route.decode(body, version)
            except MessageError as exc:
                await self._dead_letter(delivery, exc, metrics)
                return
            key = message_identity(body, env.message_id)
            if not key:
                await self._dead_letter(delivery, NoIdentityError(self.queue, env.type), metrics)
                return

            ctx = HandlerContext(env, self._site)
            correlation_id = env.correlation_id
            correlation = (
                None
                if correlation_id is None and _LOG_CORRELATION_ID.get() is ...
                else _LOG_CORRELATION_ID.set(... if correlation_id is None else correlation_id)
            )
            causation_id = env.causation_id
            causation = (
                None
                if causation_id is None and _LOG_CAUSATION_ID.get() is ...
                else _LOG_CAUSATION_ID.set(... if causation_id is None else causation_id)
            )
            in_handler = False
            try:
                async with self._transaction(wait=False) as tx:
                    if await tx.inbox.claim(self.queue, key):
                        ctx._tx = tx
                        in_handler = True
                        start = _clock() if metrics is not None else 0.0
                        try:
                            await route.handler(message, ctx)
                        finally:
                            if metrics is not None:
                                metrics.handler.observe(_clock() - start)
                        in_handler = False
                        if ctx.buffer:
                            add = tx.outbox.add
                            for out in ctx.buffer:
                                await add(out.exchange, out.envelope, out.body)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                if isinstance(exc, _STORE_DOWN) or (
                    not in_handler
                    and isinstance(exc, StoreError)
                    and not isinstance(exc, StoreUsageError)
                ):
                    await self.store_failed(delivery, exc, "transaction")
                elif isinstance(exc, RejectMessage):
                    await self._dead_letter(delivery, exc, metrics)
                else:
                    await self._failed(delivery, exc, metrics)
                return
            finally:
                if causation is not None:
                    _LOG_CAUSATION_ID.reset(causation)
                if correlation is not None:
                    _LOG_CORRELATION_ID.reset(correlation)
            item = (tx, delivery, metrics)
            try:
                self._settler.send_nowait(item)
            except anyio.WouldBlock:
                await self._settler.send(item)
        except BaseException as exc:
            if span is not None:
                span.end(exc)
                span = None
            raise
        finally:
            if mode == _W3C:
                LOG_TRACE_ID.reset(log_token)
                CURRENT_TRACE.reset(trace_token)
            elif span is not None:
                span.end()

    async def store_failed(self, delivery: Delivery, exc: BaseException, where: str) -> None:
        """Give ``delivery`` back to the broker unacked: its unit's outcome is unknown."""
        if isinstance(exc, StoreUnavailableError):
            self._health.failed(exc, where)
        elif not isinstance(exc, StoreClosedError):
            _log.warning(
                "store_failed",
                store=self._store.url,
                queue=self.queue,
                message_id=delivery.envelope.message_id,
                where=where,
                error=str(exc),
            )
        _log.debug(
            "delivery_requeued",
            queue=self.queue,
            message_id=delivery.envelope.message_id,
            reason="store",
        )
        try:
            await delivery.nack(requeue=True)
        except Exception as nack_exc:  # the broker is gone: it requeues by itself
            _log.debug("requeue_failed", error=str(nack_exc))
