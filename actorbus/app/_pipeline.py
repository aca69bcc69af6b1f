"""The per-queue pipeline, built once at start-up: decode → handler → publish → ack.

Per delivery the hot path is: one dict lookup for the route, one typed msgspec decode, one
inbox lookup, the handler, one pipelined publish of what it buffered (if anything), one
inbox record and the ack. Everything else (decoders, handler lookup, retry policy,
dead-letter headers, whether to count metrics and to trace) is decided here, before the
first message, and :meth:`Pipeline.handle` does all of it in one coroutine, which is the
consumer actor's ``receive`` itself: no layers of wrapping coroutines per delivery.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .._log import get_logger, log_context_var
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
    NoIdentityError,
    PublishError,
    RejectMessage,
    RetryLater,
    UnknownMessageTypeError,
    UnsupportedContentTypeError,
    UnsupportedVersionError,
)
from ..messages import SCHEMA_VERSION_HEADER, MessageRegistry
from ..observe import CURRENT_TRACE, LOG_TRACE_ID, consumer_context
from ..runtime import Actor
from ._context import HandlerContext, HandlerSite, ServiceContext
from ._inbox import Inbox
from ._outgoing import Outgoing
from ._service import Handler, RetryPolicy, Service

if TYPE_CHECKING:
    from ..observe import QueueMetrics, Span, Tracer, TypeMetrics

__all__ = ("ConsumerActor", "Pipeline")

_log = get_logger("actorbus.app")

_MAX_ERROR_TEXT = 1000
_JSON = "application/json"
# A foreign producer that sets no content type is read as JSON (AMQP reports it as
# octet-stream); one that says it sent something else is not.
_ACCEPTED = frozenset({_JSON, "", "application/octet-stream"})

_clock = time.perf_counter


# structlog's context variables for the ids of the delivery whose handler runs, so every log
# line the handler emits (through any logger; structlog's ``merge_contextvars``) carries
# them. (The trace id is bound by the tracer's span, for the whole delivery.)
_LOG_CORRELATION_ID = log_context_var("correlation_id")
_LOG_CAUSATION_ID = log_context_var("causation_id")


class _Route:
    __slots__ = ("decode", "handler", "metrics")

    def __init__(self, decode: Any, handler: Handler, metrics: TypeMetrics | None) -> None:
        self.decode = decode
        self.handler = handler
        self.metrics = metrics


# How a delivery is traced, decided at start-up.
_NO_TRACING = 0
_W3C = 1  # the built-in tracer: the message's context made current, no span object
_SPANS = 2  # a tracer that records spans (OpenTelemetry)


def _nowait(inbox: Inbox | None, name: str) -> Any:
    """Return ``inbox``'s synchronous ``<name>_nowait``, if the class defining ``<name>`` has it.

    A subclass that overrides ``lookup`` (say) but not ``lookup_nowait`` keeps its override.
    """
    if inbox is None:
        return None
    owner = next((k for k in type(inbox).__mro__ if name in vars(k)), None)
    if owner is None or f"{name}_nowait" not in vars(owner):
        return None
    return getattr(inbox, f"{name}_nowait")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnknownMessageTypeError):
        return "unknown-type"
    if isinstance(exc, UnsupportedVersionError):
        return "unsupported-version"
    if isinstance(exc, MessageTooLargeError):
        return "too-large"
    if isinstance(exc, NoIdentityError):
        return "no-identity"
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
    """

    __slots__ = (
        "_consumer",
        "_inbox",
        "_lookup_nowait",
        "_metrics",
        "_publish_batch",
        "_record_nowait",
        "_retry",
        "_routes",
        "_service",
        "_site",
        "_trace_mode",
        "_tracer",
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
        self.queue = service.queue.name
        self._site = HandlerSite(context, self.queue, outgoing)
        self._consumer = f"{service.name}:{self.queue}"
        self._publish_batch = publish_batch or broker.publish_batch
        self._inbox = inbox
        # An inbox that answers without I/O is asked without awaiting (two awaits saved).
        self._lookup_nowait = _nowait(inbox, "lookup")
        self._record_nowait = _nowait(inbox, "record")
        self._retry: RetryPolicy = service.retry
        self._tracer = tracer
        self._trace_mode = _NO_TRACING if tracer is None else _SPANS if tracer.records else _W3C
        self._metrics = metrics
        self._routes: dict[str, _Route] = {
            key: _Route(
                registry.decoder(key, target=sub.message_type).decode,
                sub.handler,
                None if metrics is None else metrics.of(key),
            )
            for key, sub in service.subscriptions.items()
        }

    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery to its end: acked, retried later, or dead-lettered.

        The whole hot path is this one coroutine (plus the handler's): what is switched
        on (tracing, metrics, the inbox) was decided at start-up and costs a test here.
        """
        env = delivery.envelope
        mode = self._trace_mode
        span: Span | None = None
        if mode == _W3C:
            # What Tracer.start_consumer and Span do, without a Span object per delivery.
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
            headers: Mapping[str, Any] = env.headers
            try:
                message = route.decode(
                    delivery.body, headers.get(SCHEMA_VERSION_HEADER) if headers else None
                )
            except MessageError as exc:
                await self._dead_letter(delivery, exc, metrics)
                return

            inbox = self._inbox
            if inbox is None:
                published = None
            else:
                message_id = env.message_id or message.message_id
                if self._lookup_nowait is not None:
                    published = self._lookup_nowait(self._consumer, message_id)
                else:
                    published = await inbox.lookup(self._consumer, message_id)
            if published is None:
                ctx = HandlerContext(env, self._site)
                # The ids go into structlog's contextvars for the handler's log lines; a var
                # that is unset and stays unset is not touched (two set/reset pairs saved).
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
                start = _clock() if metrics is not None else 0.0
                try:
                    try:
                        await route.handler(message, ctx)
                    finally:  # the handler's time alone, whether it returned or raised
                        if metrics is not None:
                            metrics.handler.observe(_clock() - start)
                except anyio.get_cancelled_exc_class():
                    raise
                except RejectMessage as exc:
                    await self._dead_letter(delivery, exc, metrics)
                    return
                except Exception as exc:
                    await self._failed(delivery, exc, metrics)
                    return
                finally:
                    if causation is not None:
                        _LOG_CAUSATION_ID.reset(causation)
                    if correlation is not None:
                        _LOG_CORRELATION_ID.reset(correlation)
                published = ctx.buffer
                if inbox is not None:
                    if self._record_nowait is not None:
                        self._record_nowait(self._consumer, message_id, published)
                    else:
                        await inbox.record(self._consumer, message_id, published)
            # A redelivery of a handled message lands here too: what its handling published
            # is published again (same eventIds), for downstream inboxes to drop as duplicates.
            if published:
                try:
                    await self._publish_batch(published)
                except PublishError as exc:  # refused or unroutable: retried like a handler error
                    await self._failed(delivery, exc, metrics)
                    return
            await delivery.ack()
            if metrics is not None:
                metrics.acked += 1
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

    async def _failed(
        self, delivery: Delivery, exc: Exception, metrics: TypeMetrics | None
    ) -> None:
        env = delivery.envelope
        attempt = env.attempt
        if attempt >= self._retry.max_attempts:
            await self._dead_letter(delivery, exc, metrics)
            return
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
        if metrics is not None:
            metrics.retried += 1

    async def _dead_letter(
        self, delivery: Delivery, exc: BaseException, metrics: TypeMetrics | None
    ) -> None:
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
        if metrics is not None:
            counts = metrics.dead_lettered
            reason = headers[XH_REASON]
            counts[reason] = counts.get(reason, 0) + 1


class ConsumerActor(Actor):
    """The actor that drains one subscription's mailbox through a :class:`Pipeline`.

    If processing a delivery fails outside the handler (e.g. the broker went away while
    acking), the delivery is handed back to the broker and the supervisor restarts the
    actor; its mailbox, and the deliveries in it, survive the restart.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self._handle = pipeline.handle
        # The instance's receive is the pipeline's coroutine function itself: the actor loop
        # then creates one coroutine per delivery, not two.
        self.receive = pipeline.handle  # type: ignore[method-assign,assignment]

    async def receive(self, message: Any) -> None:
        """Run one delivery through the pipeline (``__init__`` puts the pipeline's own
        ``handle`` in this method's place on each instance)."""
        await self._handle(message)  # pragma: no cover - shadowed per instance

    async def on_failure(self, exc: Exception, message: Any) -> None:
        """Requeue the delivery whose processing failed, so that no message is lost."""
        if isinstance(message, Delivery):
            try:
                await message.nack(requeue=True)
            except Exception as nack_exc:  # the broker is gone: it requeues by itself
                _log.debug("requeue_failed", error=str(nack_exc))
