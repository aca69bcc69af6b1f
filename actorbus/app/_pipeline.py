"""The per-queue pipeline, built once at start-up: decode → handler → publish → ack.

Per delivery the hot path is: one dict lookup for the route, one typed msgspec decode, one
inbox lookup, the handler, one pipelined publish of what it buffered (if anything), one
inbox record and the ack. Everything else (decoders, handler lookup, retry policy,
dead-letter headers, whether to count metrics and to trace) is decided here, before the
first message: :attr:`Pipeline.handle` is a chain of only the layers that are switched on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from .._log import get_logger
from ..brokers import (
    XH_ATTEMPTS,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_REASON,
    Broker,
    Delivery,
    OutboundMessage,
)
from ..exceptions import (
    DecodeError,
    MessageError,
    MessageTooLargeError,
    PublishError,
    RejectMessage,
    RetryLater,
    UnknownMessageTypeError,
    UnsupportedContentTypeError,
    UnsupportedVersionError,
)
from ..messages import SCHEMA_VERSION_HEADER, MessageRegistry
from ..runtime import Actor
from ._context import HandlerContext, Outgoing
from ._inbox import Inbox
from ._service import Handler, RetryPolicy, Service

if TYPE_CHECKING:
    from ._app import ServiceContext
    from ._metrics import QueueMetrics
    from ._tracing import Tracer

__all__ = ("ConsumerActor", "Pipeline")

_log = get_logger("actorbus.app")

_MAX_ERROR_TEXT = 1000
_JSON = "application/json"
# A foreign producer that sets no content type is read as JSON (AMQP reports it as
# octet-stream); one that says it sent something else is not.
_ACCEPTED = frozenset({_JSON, "", "application/octet-stream"})

# How a delivery ended, for the metrics layer.
_ACKED = 0
_RETRIED = 1
_DEAD_LETTERED = 2


# structlog's own contextvars for the ids of the delivery whose handler runs, so every log
# line the handler emits (through any logger; structlog's ``merge_contextvars``) carries
# them. Fetched once: setting one directly costs ~0.1 µs, ``bind_contextvars`` ~0.5 µs a key.
# (The trace id is bound by the tracer's span, for the whole delivery.)
def _log_var(key: str) -> Any:
    token = structlog.contextvars.bind_contextvars(**{key: ...})[key]
    var = token.var
    var.reset(token)
    return var


_LOG_CORRELATION_ID = _log_var("correlation_id")
_LOG_CAUSATION_ID = _log_var("causation_id")


class _Route:
    __slots__ = ("decode", "handler")

    def __init__(self, decode: Any, handler: Handler) -> None:
        self.decode = decode
        self.handler = handler


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnknownMessageTypeError):
        return "unknown-type"
    if isinstance(exc, UnsupportedVersionError):
        return "unsupported-version"
    if isinstance(exc, MessageTooLargeError):
        return "too-large"
    if isinstance(exc, DecodeError):
        return "decode-error"
    if isinstance(exc, UnsupportedContentTypeError):
        return "unsupported-content-type"
    if isinstance(exc, RejectMessage):
        return "rejected"
    return "handler-error"


def error_headers(exc: BaseException, attempts: int) -> dict[str, Any]:
    """Return the dead-letter headers that record why ``exc`` dead-lettered a message."""
    text = str(exc)
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "…"
    return {
        XH_REASON: _reason(exc),
        XH_ERROR_TYPE: type(exc).__qualname__,
        XH_ERROR_MESSAGE: text,
        XH_ATTEMPTS: attempts,
    }


class Pipeline:
    """Handles the deliveries of one service's queue.

    Args:
        service: The service whose handlers run.
        registry: The app's trusted message types.
        broker: Where buffered publishes go.
        inbox: The idempotency inbox, or ``None`` when the service dedupes by itself.
        outgoing: Encodes and addresses what handlers publish.
        context: The service's context, handed to handlers as ``ctx.context``.
        tracer: Continues each delivery's trace while it is handled; ``None`` for no tracing.
        metrics: Counts deliveries and times handlers; ``None`` for no metrics.
        publish_batch: Publishes what a handler buffered; ``broker.publish_batch`` if ``None``.

    Attributes:
        handle: Process one delivery to its end: acked, retried later, or dead-lettered.
    """

    __slots__ = (
        "_consumer",
        "_context",
        "_inbox",
        "_inner",
        "_metrics",
        "_outgoing",
        "_publish_batch",
        "_retry",
        "_routes",
        "_service",
        "_tracer",
        "handle",
        "queue",
    )

    def __init__(
        self,
        service: Service,
        registry: MessageRegistry,
        broker: Broker,
        inbox: Inbox | None,
        outgoing: Outgoing,
        context: ServiceContext,
        *,
        tracer: Tracer | None = None,
        metrics: QueueMetrics | None = None,
        publish_batch: Callable[[Sequence[OutboundMessage]], Awaitable[None]] | None = None,
    ) -> None:
        self._service = service.name
        self._context = context
        self.queue = service.queue.name
        self._consumer = f"{service.name}:{self.queue}"
        self._publish_batch = publish_batch or broker.publish_batch
        self._inbox = inbox
        self._outgoing = outgoing
        self._retry: RetryPolicy = service.retry
        self._tracer = tracer
        self._metrics = metrics
        self._routes: dict[str, _Route] = {
            key: _Route(
                registry.decoder(key, target=sub.message_type).decode,
                sub.handler if metrics is None else metrics.timed(key, sub.handler),
            )
            for key, sub in service.subscriptions.items()
        }
        # The layers, outermost first: trace span, metrics, processing; only those switched
        # on: with neither, a delivery pays for neither (not even a check).
        self._inner: Callable[[Delivery], Awaitable[int]] = (
            self._process if metrics is None else self._measured
        )
        self.handle: Callable[[Delivery], Awaitable[object]] = (
            self._inner if tracer is None else self._traced
        )

    async def _traced(self, delivery: Delivery) -> None:
        tracer = self._tracer
        if tracer is None:  # pragma: no cover - only installed with a tracer
            raise RuntimeError("the pipeline has no tracer")
        span = tracer.start_consumer(delivery.envelope, self._service, self.queue)
        try:
            await self._inner(delivery)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()

    async def _measured(self, delivery: Delivery) -> int:
        metrics = self._metrics.of(delivery.envelope.type)  # type: ignore[union-attr]
        metrics.consumed += 1
        outcome = await self._process(delivery)
        if outcome == _ACKED:
            metrics.acked += 1
        elif outcome == _RETRIED:
            metrics.retried += 1
        return outcome  # dead letters are counted with their reason in _dead_letter

    async def _process(self, delivery: Delivery) -> int:
        env = delivery.envelope
        route = self._routes.get(env.type)
        if route is None:
            return await self._dead_letter(
                delivery, UnknownMessageTypeError(env.type, self._routes)
            )
        content_type = env.content_type
        if content_type not in _ACCEPTED and not content_type.startswith(_JSON):
            return await self._dead_letter(delivery, UnsupportedContentTypeError(content_type))
        headers: Mapping[str, Any] = env.headers
        try:
            message = route.decode(
                delivery.body, headers.get(SCHEMA_VERSION_HEADER) if headers else None
            )
        except MessageError as exc:
            return await self._dead_letter(delivery, exc)

        message_id = env.message_id or message.message_id
        inbox = self._inbox
        published = None if inbox is None else await inbox.lookup(self._consumer, message_id)
        if published is None:
            ctx = HandlerContext(env, self._context, self.queue, self._outgoing)
            correlation_id = env.correlation_id
            causation_id = env.causation_id
            correlation = _LOG_CORRELATION_ID.set(
                correlation_id if correlation_id is not None else ...
            )
            causation = _LOG_CAUSATION_ID.set(causation_id if causation_id is not None else ...)
            try:
                await route.handler(message, ctx)
            except anyio.get_cancelled_exc_class():
                raise
            except RejectMessage as exc:
                return await self._dead_letter(delivery, exc)
            except Exception as exc:
                return await self._failed(delivery, exc)
            finally:
                _LOG_CAUSATION_ID.reset(causation)
                _LOG_CORRELATION_ID.reset(correlation)
            published = ctx.buffer
            if inbox is not None:
                await inbox.record(self._consumer, message_id, published)
        # A redelivery of a handled message lands here too: what its handling published is
        # published again (same eventIds), for downstream inboxes to drop as duplicates.
        if published:
            try:
                await self._publish_batch(published)
            except PublishError as exc:  # refused or unroutable: retried like a handler error
                return await self._failed(delivery, exc)
        await delivery.ack()
        return _ACKED

    async def _failed(self, delivery: Delivery, exc: Exception) -> int:
        env = delivery.envelope
        attempt = env.attempt
        if attempt >= self._retry.max_attempts:
            return await self._dead_letter(delivery, exc)
        if self._tracer is not None:
            self._tracer.record_error(exc)
        delay = exc.delay if isinstance(exc, RetryLater) and exc.delay is not None else None
        if delay is None:
            delay = self._retry.backoff.delay(attempt)
        if not isinstance(exc, RetryLater):
            _log.warning(
                "handler_failed",
                service=self._service,
                queue=self.queue,
                message_type=env.type,
                message_id=env.message_id,
                correlation_id=env.correlation_id,
                attempt=attempt,
                max_attempts=self._retry.max_attempts,
                retry_in=round(delay, 3),
                error=f"{type(exc).__name__}: {exc}",
            )
        await delivery.retry(delay, {XH_ERROR_TYPE: type(exc).__qualname__})
        return _RETRIED

    async def _dead_letter(self, delivery: Delivery, exc: BaseException) -> int:
        env = delivery.envelope
        headers = error_headers(exc, env.attempt)
        if self._tracer is not None:
            self._tracer.record_error(exc)
        _log.error(
            "message_dead_lettered",
            service=self._service,
            queue=self.queue,
            dlq=f"{self.queue}.dlq",
            message_type=env.type,
            message_id=env.message_id,
            correlation_id=env.correlation_id,
            attempts=env.attempt,
            reason=headers[XH_REASON],
            error=headers[XH_ERROR_MESSAGE],
        )
        await delivery.dead_letter(headers)
        if self._metrics is not None:
            counts = self._metrics.of(env.type).dead_lettered
            reason = headers[XH_REASON]
            counts[reason] = counts.get(reason, 0) + 1
        return _DEAD_LETTERED


class ConsumerActor(Actor):
    """The actor that drains one subscription's mailbox through a :class:`Pipeline`.

    If processing a delivery fails outside the handler (e.g. the broker went away while
    acking), the delivery is handed back to the broker and the supervisor restarts the
    actor; its mailbox, and the deliveries in it, survive the restart.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._handle = pipeline.handle

    async def receive(self, message: Any) -> None:
        """Run one delivery through the pipeline."""
        await self._handle(message)

    async def on_failure(self, exc: Exception, message: Any) -> None:
        """Requeue the delivery whose processing failed, so that no message is lost."""
        if isinstance(message, Delivery):
            try:
                await message.nack(requeue=True)
            except Exception as nack_exc:  # the broker is gone: it requeues by itself
                _log.debug("requeue_failed", error=str(nack_exc))
