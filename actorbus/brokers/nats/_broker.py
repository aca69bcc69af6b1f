"""NatsBroker: the broker protocol on NATS JetStream through nats-py.

Connects (several servers, TLS, credentials), declares topology (:mod:`._topology`),
publishes with JetStream acks (the counterpart of publisher confirms) and deduplication by
``Nats-Msg-Id``, consumes through supervised pull loops (:mod:`._consumer`), and answers
``get``, ``queue_depth`` and ``purge`` for the dead-letter tools. After a reconnect it
re-declares what it declared (a restarted server may have lost memory streams) and makes
every pull loop send its pull request again.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Awaitable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import msgspec
import nats
import nats.errors
import nats.js.errors
import sniffio

from ..._log import get_logger
from ...exceptions import (
    BrokerConnectionError,
    ConfigurationError,
    ExchangeNotFoundError,
    PublishError,
    PublishNackedError,
    PublishTooLargeError,
    QueueNotFoundError,
    UnroutableError,
)
from .._deadletter import XH_REPLAY
from .._protocol import DeliveryCallback, OutboundMessage, Topology
from ._acks import AckWaiter, decode_ack
from ._consumer import NatsSubscription, admit
from ._delivery import NatsDelivery
from ._mapping import (
    H_MESSAGE_ID,
    H_ORIGINAL_ID,
    headers_for,
    stream_name,
    subject_for,
    subject_matches,
)
from ._options import parse_nats_url
from ._topology import ConsumerRef, TopologyManager

if TYPE_CHECKING:
    from typing import Self

    from anyio.abc import TaskGroup
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext

__all__ = ("NatsBroker",)

_log = get_logger("actorbus.brokers", broker="nats")
_NO_WAIT = json.dumps({"batch": 1, "no_wait": True}).encode()
_STATUS, _NO_RESPONDERS = "Status", "503"
#: Acks a ``publish_batch`` awaits at once (``js.publish_async``'s default bound).
_BATCH_WINDOW = 4000


def _nacked(
    exchange: str, routing_key: str, message_id: str | None, reason: str | None, code: int | None
) -> PublishNackedError:
    """A :class:`PublishNackedError` whose message ends with JetStream's reason."""
    error = PublishNackedError(exchange, routing_key, message_id)
    error.args = (f"{error.args[0]} (JetStream: {reason or 'no reason given'}, err_code {code})",)
    return error


class NatsBroker:
    """A broker on NATS JetStream: ``nats://host:4222`` (see :mod:`actorbus.brokers.nats`).

    Args:
        url: ``nats://[user:password@]host:port[,host:port…][?options]`` or ``tls://…``.
        max_message_size: Refuse larger bodies on publish, dead-letter larger deliveries;
            overrides ``?max_message_size=``; the server's ``max_payload`` by default.
        request_timeout: Seconds to wait for a JetStream API answer or publish ack.

    Raises:
        ConfigurationError: The URL is malformed.
    """

    def __init__(
        self, url: str, *, max_message_size: int | None = None, request_timeout: float = 5.0
    ) -> None:
        self._options = parse_nats_url(url)
        self._url = self._options.redacted
        self._max_size = max_message_size or self._options.max_message_size or 0
        self._timeout = request_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: AckWaiter | None = None
        self._topology: TopologyManager | None = None
        self._tg: TaskGroup | None = None
        self._entered = False
        self._connected = False
        self._subs: list[NatsSubscription] = []
        self._unsettled: dict[NatsDelivery, None] = {}
        self._routable: set[str] = set()
        self._filters: dict[str, list[str]] = {}
        self._get_lock = anyio.Lock()
        self._get_sub: Subscription | None = None
        self._get_inbox = ""
        self._connect_error: str | None = None
        self._connect_scope: anyio.CancelScope | None = None
        self._tls_failed = False

    def __repr__(self) -> str:
        return f"<NatsBroker {self._url} ready={self.is_ready}>"

    # ------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The broker's URL with credentials redacted; safe to log."""
        return self._url

    @property
    def is_ready(self) -> bool:
        """Connected, and every subscription's pull loops fetching."""
        return self._entered and self._connected and all(s.active for s in self._subs)

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (only while entered)."""
        if self._js is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        return self._js

    @property
    def nc(self) -> Client:
        """The NATS connection (only while entered)."""
        if self._nc is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        return self._nc

    @property
    def connected(self) -> bool:
        """Whether the connection is up."""
        return self._connected

    @property
    def max_message_size(self) -> int:
        """The largest body delivered to consumers; ``0``: no limit."""
        return self._max_size

    def _manager(self) -> TopologyManager:
        if self._topology is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        return self._topology

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if sniffio.current_async_library() != "asyncio":
            raise ConfigurationError(
                "the NATS broker needs the asyncio backend (nats-py is asyncio-only); run "
                "with anyio.run(..., backend='asyncio')"
            )
        opts = self._options
        nc = await self._connect()
        nc.options["max_reconnect_attempts"] = -1  # once connected: reconnect forever
        self._nc = nc
        self._js = nc.jetstream(timeout=self._timeout)
        try:
            await self._js.account_info()
        except Exception as exc:
            await nc.close()
            raise BrokerConnectionError(
                self._url, f"JetStream is not available ({type(exc).__name__}: {exc}); "
                "start nats-server with -js"
            ) from None  # fmt: skip
        if not self._max_size:
            self._max_size = nc.max_payload
        self._acks = AckWaiter(nc, self._timeout)
        await self._acks.start()
        self._topology = TopologyManager(
            self._js,
            replicas=opts.replicas,
            ack_wait=opts.ack_wait,
            max_ack_pending=opts.max_ack_pending,
            duplicate_window=opts.duplicate_window,
        )
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._connected = True
        self._entered = True
        _log.info("nats_connected", url=self._url, servers=len(opts.servers))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        for sub in list(self._subs):
            await sub.cancel()
        with anyio.CancelScope(shield=True):
            for delivery in list(self._unsettled):
                with contextlib.suppress(Exception):
                    await delivery.give_back()
            self._unsettled.clear()
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.flush(timeout=2)
                with contextlib.suppress(Exception):
                    await self._nc.close()
            if self._acks is not None:
                self._acks.close()
                self._acks = None
            self._connected = False
            self._nc = self._js = None
            self._get_sub = None

    async def _connect(self) -> Client:
        """Connect to one of the servers, or raise one clear error within a bounded time.

        nats-py tries each server twice (``max_reconnect_attempts=1``), each step bounded by
        ``connect_timeout``. A failed TLS handshake is not retried: nats-py then hangs for
        ever closing the connection (nats.py #718), so the attempt is cancelled at once, and
        the whole connect is bounded as well.
        """
        opts = self._options
        limit = opts.connect_timeout * 4 * 2 * len(opts.servers) + 1.0
        self._connect_scope = anyio.CancelScope(deadline=anyio.current_time() + limit)
        self._tls_failed = False
        nc: Client | None = None
        try:
            with self._connect_scope:
                nc = await nats.connect(
                    servers=opts.servers,
                    user=opts.user,
                    password=opts.password,
                    token=opts.token,
                    tls=opts.tls,
                    name=opts.name,
                    connect_timeout=opts.connect_timeout,
                    reconnect_time_wait=0.2,
                    max_reconnect_attempts=1,  # at connect: fail fast, with a clear error
                    allow_reconnect=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except Exception as exc:
            detail = self._error_text(exc)
            if self._connect_error and self._connect_error not in detail:
                detail = f"{self._connect_error} ({detail})"
            hint = (
                "check the user and password (or token)"
                if "Authorization" in detail
                else "is nats-server running there (with -js)?"
            )
            raise BrokerConnectionError(self._url, f"{detail}; {hint}") from None
        finally:
            error, self._connect_error, self._connect_scope = self._connect_error, None, None
        if nc is None:  # cancelled: a TLS failure, or no answer within the limit
            if self._tls_failed:
                raise BrokerConnectionError(
                    self._url, f"TLS handshake failed: {error}; does the server's certificate "
                    "match the host, and is its CA given (?tls_ca=FILE)?"
                )  # fmt: skip
            raise BrokerConnectionError(
                self._url, f"no connection within {limit:g} s"
                + (f" (last error: {error})" if error else "")
            )  # fmt: skip
        return nc

    def _error_text(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"no answer within connect_timeout={self._options.connect_timeout:g} s"
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    async def _on_error(self, exc: Exception) -> None:
        if not self._entered:  # connecting: the one error of __aenter__ will name it
            error = self._error_text(exc)
            if self._connect_error is None:
                self._connect_error = error
            elif error not in self._connect_error:  # each different one, in order
                self._connect_error = f"{self._connect_error}, then {error}"
            if isinstance(exc, ssl.SSLError) and self._connect_scope is not None:
                self._tls_failed = True
                self._connect_scope.cancel()  # nats-py would hang closing it (nats.py #718)
            return
        _log.warning("nats_error", url=self._url, error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        if self._entered:
            self._connected = False
            _log.warning("nats_disconnected", url=self._url)

    async def _on_reconnected(self) -> None:
        self._connected = True
        _log.info("nats_reconnected", url=self._url)
        if self._tg is not None:
            self._tg.start_soon(self._recover)

    async def _recover(self) -> None:
        manager = self._manager()
        manager.forget()
        for attempt in range(50):
            try:
                await manager.declare(manager.declared)
                break
            except Exception as exc:
                _log.warning("nats_redeclare_failed", url=self._url, attempt=attempt + 1,
                             error=f"{type(exc).__name__}: {exc}")  # fmt: skip
                await anyio.sleep(0.2)
        for sub in self._subs:
            sub.kick()

    # ------------------------------------------------------------ holder

    def take(self, delivery: NatsDelivery) -> None:
        """Hold ``delivery`` unsettled (requeued when the broker closes)."""
        self._unsettled[delivery] = None

    def release(self, delivery: NatsDelivery) -> None:
        """Forget a settled delivery."""
        self._unsettled.pop(delivery, None)

    def forget(self, subscription: NatsSubscription) -> None:
        """Stop tracking a cancelled subscription."""
        with contextlib.suppress(ValueError):
            self._subs.remove(subscription)

    def dead_letters(self, queue: str) -> bool:
        """Whether ``queue`` has a dead-letter queue (from its cached record)."""
        record = self._manager()._records.get(queue)
        return record is None or bool(record.spec.get("dead_letter", True))

    def delivery_limit(self, queue: str) -> int | None:
        """The queue's ``delivery_limit`` (redeliveries before dead-lettering)."""
        record = self._manager()._records.get(queue)
        limit = record.spec.get("delivery_limit") if record is not None else None
        return limit if isinstance(limit, int) else None

    async def publish_copy(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish a retry or dead-letter copy and await its JetStream ack.

        The copy of a replayed message gets the replay's id in its ``Nats-Msg-Id``: its first
        life's copies (same message id, attempt and queue) may still be in the duplicate
        window, and JetStream would drop this one as their duplicate, losing the message.
        """
        replay = headers.get(XH_REPLAY)
        if replay and H_MESSAGE_ID in headers:
            headers[H_MESSAGE_ID] = f"{headers[H_MESSAGE_ID]}:{replay}"
        message_id = headers.get(H_MESSAGE_ID)
        try:
            reply = await (await self._send(subject, body, headers))
        except Exception as exc:
            raise self._publish_error(exc, "", subject, message_id) from exc
        error = self._refusal(reply, "", subject, message_id)
        if error is not None:
            raise error

    # ------------------------------------------------------------ topology

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges (streams), queues (consumers) and bindings; idempotent.

        Raises:
            TopologyError: A declaration clashes with what exists, or a pattern cannot be
                expressed as NATS subjects.
        """
        manager = self._manager()
        try:
            await manager.declare(topology)
        except nats.errors.Error as exc:
            raise BrokerConnectionError(self._url, f"declaring topology failed: {exc}") from exc
        self._filters.clear()
        bound = {binding.queue for binding in topology.bindings}
        for sub in list(self._subs):
            if sub.queue in bound:
                self._follow(sub, (await manager.record(sub.queue)).consumers)

    def _follow(self, sub: NatsSubscription, consumers: list[ConsumerRef]) -> None:
        """Make a running subscription pull from consumers its queue got since it started.

        A binding is a JetStream consumer of its own (nats-server 2.9: one filter subject
        per consumer), so a binding declared after ``consume`` needs a pull loop of the
        running subscription, as on RabbitMQ, where the queue's consumers receive what a new
        binding routes. The loop shares the subscription's prefetch, health and cancel.
        """
        for ref in consumers:
            sub.follow(ref)

    # ------------------------------------------------------------ publishing

    async def _check_routable(self, message: OutboundMessage, subject: str) -> None:
        if subject in self._routable:
            return
        env = message.envelope
        if not message.exchange:
            try:
                await self._manager().record(env.routing_key)
            except QueueNotFoundError:
                raise UnroutableError("", env.routing_key, env.message_id) from None
            self._routable.add(subject)
            return
        stream = stream_name(message.exchange)
        for refresh in (False, True):
            filters = self._filters.get(stream)
            if filters is None or refresh:
                try:
                    infos = await self.js.consumers_info(stream)
                except nats.js.errors.NotFoundError:
                    raise ExchangeNotFoundError(message.exchange, env.routing_key) from None
                filters = [i.config.filter_subject or ">" for i in infos]
                self._filters[stream] = filters
            if any(subject_matches(f, subject) for f in filters):
                self._routable.add(subject)
                return
        raise UnroutableError(message.exchange, env.routing_key, env.message_id)

    def _publish_error(
        self, exc: Exception, exchange: str, routing_key: str, message_id: str | None
    ) -> Exception:
        if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.errors.NoRespondersError):
            return ExchangeNotFoundError(exchange, routing_key)
        if isinstance(exc, nats.errors.MaxPayloadError):
            return PublishTooLargeError(0, self._max_size, f"exchange {exchange!r}")
        if isinstance(exc, nats.js.errors.APIError):
            return _nacked(exchange, routing_key, message_id, exc.description, exc.err_code)
        if isinstance(exc, nats.errors.TimeoutError | nats.errors.ConnectionClosedError):
            return BrokerConnectionError(
                self._url, f"no JetStream ack for message {message_id!r} ({type(exc).__name__}); "
                "it may or may not be stored: publish it again (Nats-Msg-Id deduplicates)"
            )  # fmt: skip
        return PublishError(f"publishing to {exchange!r} / {routing_key!r} failed: {exc}")

    def _refusal(
        self, reply: Msg, exchange: str, routing_key: str, message_id: str | None
    ) -> Exception | None:
        """Return the error a JetStream publish reply stands for, ``None`` for an ack.

        The mapping of ``js.publish``'s errors: no responders (no stream holds the subject)
        is :class:`ExchangeNotFoundError`, an API error reply a :class:`PublishNackedError`
        naming JetStream's reason.
        """
        if reply.headers and reply.headers.get(_STATUS) == _NO_RESPONDERS:
            return ExchangeNotFoundError(exchange, routing_key)
        try:
            ack = decode_ack(reply.data)
        except msgspec.DecodeError:
            return PublishError(
                f"publishing to {exchange!r} / {routing_key!r}: not a JetStream ack: "
                f"{reply.data[:200]!r}"
            )
        if ack.error is not None:
            return _nacked(
                exchange, routing_key, message_id, ack.error.description, ack.error.err_code
            )
        return None

    async def _send(self, subject: str, body: bytes, headers: dict[str, str]) -> Awaitable[Msg]:
        """Publish with a reply subject of :class:`AckWaiter`'s; return the ack's future."""
        nc, acks = self._nc, self._acks
        if nc is None or acks is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        reply, future = acks.expect()
        try:
            await nc.publish(subject, body, reply=reply, headers=headers)
        except BaseException:
            future.cancel()
            raise
        return future

    def _prepare(self, message: OutboundMessage) -> tuple[str, dict[str, str]]:
        size = len(message.body)
        if self._max_size and size > self._max_size:
            raise PublishTooLargeError(size, self._max_size, f"exchange {message.exchange!r}")
        env = message.envelope
        subject = subject_for(message.exchange, env.routing_key)
        headers = headers_for(message.exchange, env)
        replay = env.headers.get(XH_REPLAY) if env.headers else None
        if replay:
            # A replayed dead letter keeps its message id; within the duplicate window
            # JetStream would drop it as a repeat of its first publish.
            headers[H_ORIGINAL_ID] = env.message_id
            headers[H_MESSAGE_ID] = f"{env.message_id}:replay:{replay}"
        return subject, headers

    async def publish(self, message: OutboundMessage) -> None:
        """Publish one message and wait for its JetStream ack.

        Raises:
            UnroutableError: ``message.mandatory`` and no queue is bound to its routing key.
            ExchangeNotFoundError: The exchange (stream) does not exist.
            PublishTooLargeError: The body exceeds ``max_message_size``.
            PublishNackedError: JetStream refused it (its reason in the message).
            BrokerConnectionError: No ack arrived within ``request_timeout`` (the connection
                was lost, or the server is overloaded).
        """
        subject, headers = self._prepare(message)
        if message.mandatory:
            await self._check_routable(message, subject)
        try:
            reply = await (await self._send(subject, message.body, headers))
        except Exception as exc:
            env = message.envelope
            raise self._publish_error(
                exc, message.exchange, env.routing_key, env.message_id
            ) from exc
        env = message.envelope
        error = self._refusal(reply, message.exchange, env.routing_key, env.message_id)
        if error is not None:
            raise error

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish several messages pipelined and wait until all are acked.

        At most 4 000 acks are awaited at once (``js.publish_async``'s bound); each one for
        at most ``request_timeout`` (a lost connection does not leave the batch hanging).

        Raises:
            PublishError: At least one was not acked; the first failure, after all settled.
        """
        pending: list[tuple[OutboundMessage, Awaitable[Msg]]] = []
        errors: list[Exception] = []
        settled = 0

        async def settle(index: int) -> None:
            message, future = pending[index]
            env = message.envelope
            try:
                reply = await future
                error = self._refusal(reply, message.exchange, env.routing_key, env.message_id)
            except Exception as exc:
                error = self._publish_error(exc, message.exchange, env.routing_key, env.message_id)
            if error is not None:
                errors.append(error)

        for message in messages:
            subject, headers = self._prepare(message)
            if message.mandatory:
                await self._check_routable(message, subject)
            try:
                future = await self._send(subject, message.body, headers)
            except Exception as exc:
                future = AckWaiter.failed(exc)
            pending.append((message, future))
            if len(pending) - settled >= _BATCH_WINDOW:
                await settle(settled)
                settled += 1
        for index in range(settled, len(pending)):
            await settle(index)
        if errors:
            raise errors[0]

    # ------------------------------------------------------------ consuming

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> NatsSubscription:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries.

        Raises:
            QueueNotFoundError: The queue was not declared.
        """
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be >= 1, got {prefetch!r}")
        record = await self._manager().record(queue, fresh=True)
        sub = NatsSubscription(self, queue, list(record.consumers), on_delivery, prefetch)
        self._subs.append(sub)
        if self._tg is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        await self._tg.start(sub.run)
        return sub

    async def _next(self, stream: str, consumer: str) -> Msg | None:
        # A no-wait pull request answered on an inbox of our own: nats-py's request()
        # drops JetStream messages delivered to its response inbox (nats-py 2.16).
        nc = self._nc
        if nc is None:
            raise BrokerConnectionError(self._url, "the broker is not connected; enter it first")
        async with self._get_lock:
            if self._get_sub is None:
                self._get_inbox = nc.new_inbox()
                self._get_sub = await nc.subscribe(self._get_inbox)
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", _NO_WAIT, reply=self._get_inbox
            )
            try:
                msg = await self._get_sub.next_msg(timeout=self._timeout)
            except nats.errors.TimeoutError:
                raise BrokerConnectionError(
                    self._url, f"no answer to a pull from consumer {consumer!r} of {stream!r}"
                ) from None
        if msg.headers and msg.headers.get("Status"):
            return None
        return msg

    async def get(self, queue: str) -> NatsDelivery | None:
        """Take one message from ``queue`` without a subscription, or ``None`` if empty."""
        record = await self._manager().record(queue)
        for ref in record.consumers:
            while True:
                msg = await self._next(ref.stream, ref.name)
                if msg is None:
                    break
                delivery = await admit(msg, ref, queue, self, self, sync=True)
                if delivery is not None:
                    return delivery
        return None

    async def queue_depth(self, queue: str) -> int:
        """Return the messages of ``queue`` that wait for a consumer (not counting retries).

        Counted from the server (pending + unacknowledged of each consumer of the queue)
        minus what this broker holds unsettled; deliveries held by other processes count
        as waiting until they are settled.
        """
        record = await self._manager().record(queue)
        if self._nc is not None:
            await self._nc.flush(timeout=int(self._timeout) or 1)
        total = 0
        for ref in record.consumers:
            if ref.retry:
                continue
            try:
                info = await self.js.consumer_info(ref.stream, ref.name)
            except nats.js.errors.NotFoundError:
                raise QueueNotFoundError(queue) from None
            total += (info.num_pending or 0) + (info.num_ack_pending or 0)
        held = sum(1 for d in self._unsettled if d.queue == queue and not d.retry_copy)
        return max(total - held, 0)

    async def purge(self, queue: str) -> int:
        """Delete (ack) every message of ``queue`` that waits for a consumer; return the count."""
        record = await self._manager().record(queue)
        purged = 0
        for ref in record.consumers:
            if ref.retry:
                continue
            while True:
                msg = await self._next(ref.stream, ref.name)
                if msg is None:
                    break
                await msg.ack()
                purged += 1
        if self._nc is not None:
            await self._nc.flush(timeout=int(self._timeout) or 1)
        return purged
