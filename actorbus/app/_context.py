"""The contexts handlers and endpoints work with: ServiceContext (per service), HandlerContext
(per delivery)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import msgspec

from .._clock import Clock, SystemClock
from .._log import get_logger
from ..exceptions import ConfigurationError
from ..messages import Command, Envelope, Message, OutboundMessage
from ..observe import current_trace
from ._outgoing import Outgoing
from ._request import Requester

if TYPE_CHECKING:
    from ..brokers import Broker, QueueSpec
    from ..stores import Row, Store, Transaction, TxInbox, TxOutbox

__all__ = (
    "AppHandle",
    "HandlerContext",
    "HandlerSite",
    "ServiceContext",
    "ServiceInfo",
    "ServiceTransaction",
)


_log = get_logger("actorbus.app")

R = TypeVar("R", bound=Message)

#: Seconds a request waits for its reply unless told otherwise (MassTransit's default too).
DEFAULT_REQUEST_TIMEOUT = 30.0


class ServiceInfo(Protocol):
    """What a context knows of its :class:`~actorbus.Service`: its name and its queue."""

    @property
    def name(self) -> str:
        """The service's name."""
        ...

    @property
    def queue(self) -> QueueSpec:
        """The service's queue."""
        ...


class AppHandle(Protocol):
    """What a service's context sees of the :class:`~actorbus.App` that runs it."""

    @property
    def broker(self) -> Broker:
        """The App's broker."""
        ...

    @property
    def is_ready(self) -> bool:
        """Started, the broker connected, and every consumer consuming."""
        ...

    @property
    def http_address(self) -> tuple[str, int] | None:
        """The address the front door listens on, once started."""
        ...

    async def publish(
        self, event: Message, *, correlation_id: str | None = None, causation_id: str | None = None
    ) -> None:
        """Publish ``event`` to the App's events exchange and wait for the confirm."""
        ...


class ServiceContext:
    """What a service's start-up hooks and HTTP endpoints work with.

    Args:
        service: The service.
        app: The App running it.
        data_dir: The service's directory for persistent state.
        outgoing: Encodes and addresses what the service publishes.
        publish: Publishes one message and waits for the broker's confirm.
        store: The App's store, if it has one.

    Attributes:
        service: The service.
        app: The running app.
        publisher: Publishes one built message (counted in metrics when they are on).
        data_dir: The service's own directory for persistent state (created on start).
        state: A place for the service's resources (a database connection, a store).
        store: The App's :class:`~actorbus.stores.Store` (``App(store=...)``), or ``None``.
    """

    def __init__(
        self,
        service: ServiceInfo,
        app: AppHandle,
        data_dir: Path,
        outgoing: Outgoing,
        publish: Callable[[OutboundMessage], Awaitable[None]],
        store: Store | None = None,
        requester: Requester | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        #: Sends requests and matches their replies (the App's, shared by its services).
        self.requester = requester
        #: The App's clock: request timeouts and saga deadlines run on it.
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: The App's store (``App(store=...)``), or ``None``.
        self.store = store
        self.app = app
        self.data_dir = data_dir
        self.state: dict[str, Any] = {}
        self.log: Any = get_logger("actorbus.app", service=service.name)
        # This service's exchanges: services of one App may publish to different ones.
        self.outgoing = outgoing
        # Counted under this service's name when metrics are on (see App.__init__).
        self.publisher = publish

    async def publish(
        self, event: Message, *, correlation_id: str | None = None, causation_id: str | None = None
    ) -> None:
        """Publish ``event`` now and wait for the broker's confirm.

        It continues the current trace (an HTTP request's, or the one made current with
        :func:`~actorbus.app.continue_trace`), or starts one.
        """
        build = self.outgoing.build
        await self.publisher(build(event, correlation_id=correlation_id, causation_id=causation_id))

    async def send(
        self,
        command: Command,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        expect_reply: bool = False,
    ) -> None:
        """Send ``command`` now; with ``expect_reply`` the reply comes to this service's queue."""
        await self.publisher(
            self.outgoing.build(
                command,
                correlation_id=correlation_id,
                causation_id=causation_id,
                reply_to=self.service.queue.name if expect_reply else None,
            )
        )

    @overload
    async def request(
        self,
        command: Command,
        reply: type[R],
        *,
        timeout: float = ...,
        correlation_id: str | None = ...,
        causation_id: str | None = ...,
    ) -> R: ...
    @overload
    async def request(
        self,
        command: Command,
        reply: tuple[type[Message], ...],
        *,
        timeout: float = ...,
        correlation_id: str | None = ...,
        causation_id: str | None = ...,
    ) -> Message: ...

    async def request(
        self,
        command: Command,
        reply: type[Message] | tuple[type[Message], ...],
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Message:
        """Send ``command`` now and return its reply, decoded as ``reply``.

        The handler of the command answers with ``ctx.reply(...)``. See
        :meth:`HandlerContext.request` for the details.

        Args:
            command: The command; it goes to the one service that handles it.
            reply: The reply's type, or a tuple of the types it may be.
            timeout: Seconds (of the App's clock) to wait once the broker took the command.
            correlation_id: The business flow's id, carried to the reply.
            causation_id: The id of the message that caused this request.

        Raises:
            RequestTimeoutError: No reply within ``timeout``; a later one is dropped.
            UnroutableError: No service handles the command (at once, not after the timeout).
            UnexpectedReplyError: The reply is of another type.
        """
        requester = self.requester
        if requester is None:
            raise ConfigurationError(
                f"service {self.service.name!r}: request() needs a context made by an App"
            )
        build = self.outgoing.build
        return await requester.request(
            lambda address: build(
                command,
                correlation_id=correlation_id,
                causation_id=causation_id,
                reply_to=address,
            ),
            command,
            reply,
            timeout,
        )

    async def reply(
        self,
        message: Message,
        *,
        reply_to: str,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> None:
        """Send ``message`` as the reply to a command, straight to the ``reply_to`` queue.

        For replies that are sent later than the handler of the command (e.g. from an
        outbox); inside a handler, ``ctx.reply()`` does this and flushes before the ack.
        """
        await self.publisher(
            self.outgoing.build(
                message,
                correlation_id=correlation_id,
                causation_id=causation_id,
                to_queue=reply_to,
            )
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ServiceTransaction]:
        """Run the block as one unit of work on the App's store; publish through its outbox.

        What the block publishes or sends (``tx.publish``, ``tx.send``) is written to the
        outbox in the same transaction as its SQL, and published by the App's relay after
        the COMMIT: both happen, or neither. Leaving the block waits for the COMMIT (so an
        HTTP endpoint answers only once it is durable). Concurrent blocks share COMMITs.

        Example::

            async with ctx.transaction() as tx:
                await tx.execute("INSERT INTO orders (id) VALUES (?)", order_id)
                await tx.publish(OrderCreated(order_id=order_id))

        Raises:
            ConfigurationError: The App has no store.
            StoreUnavailableError: The database is unreachable; nothing was kept.
        """
        store = self.store
        if store is None:
            raise ConfigurationError(
                f"service {self.service.name!r}: ctx.transaction() needs a store; run the App "
                "with one: App(..., store='sqlite:///data/app.sqlite3') or --store URL"
            )
        async with store.transaction() as tx:
            yield ServiceTransaction(tx, self)


class ServiceTransaction:
    """A store transaction whose publishes go to the outbox (``ServiceContext.transaction``).

    It is a :class:`~actorbus.stores.Transaction` (SQL, ``inbox``, ``outbox``) plus
    :meth:`publish` and :meth:`send`, built like ``ServiceContext.publish`` builds them.
    """

    __slots__ = ("_context", "tx")

    def __init__(self, tx: Transaction, context: ServiceContext) -> None:
        self.tx = tx
        self._context = context

    @property
    def context(self) -> ServiceContext:
        """The service's context (its clock, store and state)."""
        return self._context

    @property
    def inbox(self) -> TxInbox:
        """The inbox, in this transaction."""
        return self.tx.inbox

    @property
    def outbox(self) -> TxOutbox:
        """The outbox, in this transaction."""
        return self.tx.outbox

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""
        return await self.tx.execute(sql, *args)

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        """Run a query; return its first row, or ``None``."""
        return await self.tx.fetchone(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        """Run a query; return every row."""
        return await self.tx.fetchall(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query; return the first column of its first row, or ``None``."""
        return await self.tx.fetchval(sql, *args)

    async def wait_committed(self) -> None:
        """Wait for the COMMIT (leaving the ``async with`` block already does)."""
        await self.tx.wait_committed()

    async def publish(
        self, event: Message, *, correlation_id: str | None = None, causation_id: str | None = None
    ) -> None:
        """Write ``event`` to the outbox; it is published after the COMMIT."""
        out = self._context.outgoing.build(
            event, correlation_id=correlation_id, causation_id=causation_id
        )
        await self.tx.outbox.add(out.exchange, out.envelope, out.body)

    async def send(
        self,
        command: Command,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        expect_reply: bool = False,
    ) -> None:
        """Write ``command`` to the outbox; it is sent after the COMMIT."""
        context = self._context
        out = context.outgoing.build(
            command,
            correlation_id=correlation_id,
            causation_id=causation_id,
            reply_to=context.service.queue.name if expect_reply else None,
        )
        await self.tx.outbox.add(out.exchange, out.envelope, out.body)


class HandlerSite:
    """What every delivery of one queue's pipeline shares: built once, referenced per context.

    Attributes:
        context: The handling service's context.
        queue: The queue the pipeline consumes.
        outgoing: Encodes and addresses what handlers publish.
    """

    __slots__ = ("context", "outgoing", "queue")

    def __init__(self, context: ServiceContext, queue: str, outgoing: Outgoing) -> None:
        self.context = context
        self.queue = queue
        self.outgoing = outgoing


class HandlerContext(msgspec.Struct, eq=False):
    """Given to a handler with its message: publish, send, reply; all flushed before the ack.

    What a handler publishes is buffered; when it returns, the pipeline publishes the buffer
    with confirms, records the message in the inbox, and only then acks the delivery. If the
    handler raises, nothing it buffered is published. On a durable service (an App with a
    store) the buffer is written to the outbox in the delivery's transaction (:attr:`tx`)
    instead, and published by the App's relay after the COMMIT.

    One is created per delivery, so it holds only the envelope, the buffer and a reference to
    what the queue's deliveries share, and it is a msgspec Struct (built in C; compared by
    identity).

    Attributes:
        envelope: The delivery's metadata (ids, attempt, redelivered, headers).
        buffer: What the handler published, sent or replied so far, in order.
    """

    envelope: Envelope
    _site: HandlerSite
    buffer: list[OutboundMessage] = msgspec.field(default_factory=list)
    _log: Any = None  # built on first use of `log`
    _tx: Any = None  # the delivery's store transaction, on the durable path only

    @property
    def context(self) -> ServiceContext:
        """The handling service's :class:`~actorbus.app.ServiceContext` (its ``state``,
        ``data_dir``, ``publish`` for use outside a handler)."""
        return self._site.context

    @property
    def tx(self) -> Transaction:
        """The store transaction this delivery is handled in (durable services only).

        The handler's SQL (``await ctx.tx.execute(...)``), the inbox record of this message and
        what the handler publishes commit together, once: if the handler raises, none of it is
        kept and the delivery is retried.

        Raises:
            ConfigurationError: The service is not durable (the App has no store, or the
                service was declared with ``durable=False``).
        """
        tx = self._tx
        if tx is None:
            raise ConfigurationError(
                f"ctx.tx is only available to durable services: service {self.service!r} "
                f"(queue {self.queue!r}) handles {self.envelope.type!r} without a store "
                "transaction. Run the App with a store (App(..., store='sqlite:///…') or "
                "--store URL) and do not pass Service(durable=False)"
            )
        return tx  # type: ignore[no-any-return]

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self._site.queue

    @property
    def service(self) -> str:
        """The name of the service handling the message."""
        return str(self.context.service.name)

    @property
    def state(self) -> dict[str, Any]:
        """The handling service's state (``ctx.context.state``): its store, its connections."""
        return self._site.context.state

    @property
    def message_id(self) -> str:
        """The id (``eventId``) of the message being handled."""
        return self.envelope.message_id

    @property
    def correlation_id(self) -> str | None:
        """The business flow's id, carried from message to message."""
        return self.envelope.correlation_id

    @property
    def attempt(self) -> int:
        """1 on the first delivery, then 2, 3, … on retries and redeliveries."""
        return self.envelope.attempt

    @property
    def trace_id(self) -> str | None:
        """The id of the trace this delivery belongs to (``None`` without tracing)."""
        trace = current_trace()
        return trace.trace_id if trace is not None else None

    @property
    def log(self) -> Any:
        """A structlog logger bound to this delivery's ids and trace id (built on first use)."""
        if self._log is None:
            env = self.envelope
            log = _log.bind(
                service=self.service,
                message_id=env.message_id,
                message_type=env.type,
                correlation_id=env.correlation_id,
                causation_id=env.causation_id,
                attempt=env.attempt,
            )
            trace = current_trace()
            if trace is not None:
                log = log.bind(trace_id=trace.trace_id, span_id=trace.span_id)
            self._log = log
        return self._log

    def publish(self, event: Message, *, correlation_id: str | None = None) -> None:
        """Publish ``event`` once the handler has succeeded.

        Args:
            event: The event to publish.
            correlation_id: Overrides the correlation id inherited from the delivery.
        """
        self.buffer.append(
            self._site.outgoing.build(
                event,
                correlation_id=correlation_id or self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
            )
        )

    def send(
        self, command: Command, *, expect_reply: bool = False, correlation_id: str | None = None
    ) -> None:
        """Send ``command`` to the one service that handles it, once the handler has succeeded.

        Args:
            command: The command.
            expect_reply: Ask the receiver to reply to this service's queue.
            correlation_id: Overrides the correlation id inherited from the delivery.
        """
        self.buffer.append(
            self._site.outgoing.build(
                command,
                correlation_id=correlation_id or self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                reply_to=self.queue if expect_reply else None,
            )
        )

    @overload
    async def request(self, command: Command, reply: type[R], *, timeout: float = ...) -> R: ...
    @overload
    async def request(
        self, command: Command, reply: tuple[type[Message], ...], *, timeout: float = ...
    ) -> Message: ...

    async def request(
        self,
        command: Command,
        reply: type[Message] | tuple[type[Message], ...],
        *,
        timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> Message:
        """Send ``command`` now and wait for its reply, decoded as ``reply``.

        Example::

            result = await ctx.request(ReserveStock(order_id=...), ReserveStockResult, timeout=5)

        Unlike :meth:`send`, the command goes out at once (the handler needs the answer), so
        it is sent again if this handler fails and its message is retried: request what is
        safe to ask twice (a query, or a command its handler deduplicates by ``eventId``).
        The correlation id is the delivery's; the reply is matched by request id, and one
        that comes after ``timeout`` is dropped and counted.

        Not available in durable handlers: their store transaction (and every unit committed
        with it) would wait for the round trip. Use :meth:`send` with ``expect_reply=True``,
        or a :class:`~actorbus.app.Saga`, there.

        Args:
            command: The command; it goes to the one service that handles it.
            reply: The reply's type, or a tuple of the types it may be.
            timeout: Seconds (of the App's clock) to wait once the broker took the command.

        Raises:
            RequestTimeoutError: No reply within ``timeout``.
            UnroutableError: No service handles the command (at once, not after the timeout).
            UnexpectedReplyError: The reply is of another type.
            ConfigurationError: Called in a durable handler.
        """
        if self._tx is not None:
            raise ConfigurationError(
                f"ctx.request() in durable handler of {self.envelope.type!r} (service "
                f"{self.service!r}): the store transaction would wait for the round trip. "
                "Use ctx.send(command, expect_reply=True) and handle the reply, or a Saga; "
                "or declare the service Service(durable=False)"
            )
        env = self.envelope
        return await self.context.request(
            command,
            reply,
            timeout=timeout,
            correlation_id=env.correlation_id,
            causation_id=env.message_id,
        )

    def reply(self, message: Message) -> None:
        """Reply to the command being handled (to its ``reply_to`` queue).

        Raises:
            ConfigurationError: The command asked for no reply.
        """
        reply_to = self.envelope.reply_to
        if not reply_to:
            raise ConfigurationError(
                f"cannot reply to {self.envelope.type!r} (message_id "
                f"{self.envelope.message_id!r}): it carries no reply_to queue"
            )
        self.buffer.append(
            self._site.outgoing.build(
                message,
                correlation_id=self.envelope.correlation_id,
                causation_id=self.envelope.message_id,
                to_queue=reply_to,
            )
        )
