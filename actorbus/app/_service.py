"""Service: what one microservice consumes, publishes, and serves over HTTP."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .._backoff import Backoff
from ..brokers import DEFAULT_RETRY_DELAYS, Binding, ExchangeSpec, QueueSpec, QueueType, Topology
from ..exceptions import ConfigurationError
from ..messages import Command, Message

if TYPE_CHECKING:
    from ._context import HandlerContext, ServiceContext

__all__ = ("Endpoint", "Handler", "RetryPolicy", "Service", "Startup")

M = TypeVar("M", bound=Message)

Handler = Callable[[Any, "HandlerContext"], Awaitable[None]]
"""``async def handler(message, ctx) -> None``: handles one decoded message."""

Startup = Callable[["ServiceContext"], Awaitable[None]]
"""``async def hook(service_context) -> None``: runs when the app starts or stops."""

Endpoint = Callable[[Any, "ServiceContext"], Awaitable[Any]]
"""``async def endpoint(request, service_context) -> Response``: an HTTP route (Starlette)."""

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing handler is retried before its message is dead-lettered.

    Attributes:
        max_attempts: Attempts in all, the first included; then the message is dead-lettered.
        backoff: The delay before attempt ``n + 1`` is ``backoff.delay(n)``; the broker holds
            the message meanwhile (not this process).
    """

    max_attempts: int = 5
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, factor=4.0, maximum=30.0))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts!r}"
            )


@dataclass(frozen=True, slots=True)
class Subscription:
    """One message type a service handles, and how it reaches the service's queue."""

    message_type: type[Message]
    handler: Handler
    bind: bool


class Service:
    """A microservice: a queue, the handlers of the messages it consumes, its HTTP routes.

    Events are bound from ``exchange`` by their routing key; commands from
    ``command_exchange`` by their name. Both arrive on the one ``queue`` and are dispatched
    by the message's wire name (the AMQP ``type`` property), decided once at start-up.

    Example::

        inventory = Service("inventory", exchange="orders.topic")

        @inventory.on(OrderCreatedV2)
        async def reserve(event: OrderCreatedV2, ctx: HandlerContext) -> None:
            ctx.publish(StockReserved(order_id=event.order_id, items=event.items))

    Args:
        name: Short lower-case name, e.g. ``"inventory"``.
        queue: The queue's name; ``"<name>.queue"`` by default.
        exchange: The topic exchange events are published to and bound from.
        command_exchange: The direct exchange commands are sent through.
        queue_type: ``"classic"`` or ``"quorum"`` (what a RabbitMQ cluster needs).
        prefetch: Deliveries in flight per consumer; also the bound of its mailbox.
        concurrency: Consumer actors on the queue, each handling one message at a time.
        retry: When to give up on a failing handler.
        retry_delays: The broker's delay tiers for retries, in seconds.
        single_active_consumer: Only one process consumes at a time (per-queue ordering).
        delivery_limit: Quorum queues: the broker dead-letters a message redelivered this
            many times (a poison message that crashes its consumer before any ack).
        max_length: Bound on the queue's ready messages (the oldest are dead-lettered).
        dedupe: Put the app's idempotency inbox in front of the handlers. Pass ``False``
            when the handlers keep their own inbox in the same transaction as their effects
            (as the reference services do in SQLite).
        durable: Handle each delivery in a transaction of the App's store: the inbox record
            (by the payload's ``eventId``), the handler's SQL (``ctx.tx``) and what it
            publishes (through the outbox) commit together, then the delivery is acked.
            ``None`` (the default): durable when the App has a store. ``True`` requires one.
            ``False``: the in-memory path (and ``dedupe``) even when the App has a store.
    """

    def __init__(
        self,
        name: str,
        *,
        queue: str | None = None,
        exchange: str = "actorbus.events",
        command_exchange: str = "actorbus.commands",
        queue_type: QueueType = "classic",
        prefetch: int = 256,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        single_active_consumer: bool = False,
        delivery_limit: int | None = None,
        max_length: int | None = None,
        dedupe: bool = True,
        durable: bool | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise ConfigurationError(
                f"service name {name!r} is invalid: use lower-case letters, digits, '-' and '_'"
            )
        if prefetch < 1 or concurrency < 1:
            raise ConfigurationError(
                f"service {name!r}: prefetch and concurrency must be at least 1, "
                f"got prefetch={prefetch!r}, concurrency={concurrency!r}"
            )
        self.name = name
        self.queue = QueueSpec(
            queue or f"{name}.queue",
            queue_type=queue_type,
            retry_delays=retry_delays,
            single_active_consumer=single_active_consumer,
            delivery_limit=delivery_limit,
            max_length=max_length,
        )
        self.exchange = exchange
        self.command_exchange = command_exchange
        self.prefetch = prefetch
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.dedupe = dedupe
        self.durable = durable
        self.subscriptions: dict[str, Subscription] = {}
        self.upcasters: list[tuple[type[Message], type[Message], Callable[[Any], Any]]] = []
        self.publishes: list[type[Message]] = []
        self.routes: list[Any] = []
        self.on_startup: list[Startup] = []
        self.on_shutdown: list[Startup] = []
        self.background_tasks: list[Startup] = []
        #: The sagas run by this service (``Saga.attach``), for docs and graphs.
        self.sagas: list[Any] = []

    def __repr__(self) -> str:
        return f"Service({self.name!r}, queue={self.queue.name!r})"

    def on(
        self,
        message_type: type[M],
        *,
        bind: bool = True,
        upcast: Mapping[type[Message], Callable[[Any], M]] | None = None,
    ) -> Callable[[Callable[[M, HandlerContext], Awaitable[None]]], Handler]:
        """Register the decorated function as the handler of ``message_type``.

        Args:
            message_type: The Event or Command class handled.
            bind: Bind the queue to the message's routing key. Pass ``False`` for replies,
                which reach the queue directly through ``reply_to``.
            upcast: Older types, on their own routing keys, that this handler reads too,
                each with the function that turns one into ``message_type``; e.g.
                ``{OrderCreated: v1_to_v2}`` lets a v2 handler also consume
                ``order.created`` while producers migrate.

        Raises:
            ConfigurationError: The type has no routing key, or already has a handler here.
        """

        def decorator(fn: Callable[[M, HandlerContext], Awaitable[None]]) -> Handler:
            self.add_handler(message_type, fn, bind=bind, upcast=upcast)
            return fn

        return decorator

    def add_handler(
        self,
        message_type: type[M],
        handler: Callable[[M, HandlerContext], Awaitable[None]],
        *,
        bind: bool = True,
        upcast: Mapping[type[Message], Callable[[Any], M]] | None = None,
    ) -> None:
        """Register ``handler`` for ``message_type`` (the non-decorator form of :meth:`on`).

        Raises:
            ConfigurationError: The handler is not an ``async def`` taking the message and
                the context, the type has no routing key, or it already has a handler here.
        """
        _check_handler(handler, message_type, self.name)
        Upcaster = tuple[type[Message], type[Message], Callable[[Any], Any]]
        keys: list[tuple[str, Upcaster | None]] = [(_wire_name(message_type, self.name), None)]
        for old, fn in (upcast or {}).items():
            keys.append((_wire_name(old, self.name), (old, message_type, fn)))
        for key, _ in keys:
            if key in self.subscriptions:
                raise ConfigurationError(
                    f"service {self.name!r} already handles {key!r} with "
                    f"{self.subscriptions[key].handler.__qualname__}; "
                    "one handler per message type"
                )
        for key, upcaster in keys:
            # An upcast subscription decodes what arrives on the old key as ``message_type``.
            self.subscriptions[key] = Subscription(message_type, handler, bind)
            if upcaster is not None:
                self.upcasters.append(upcaster)

    def declare_publishes(self, *message_types: type[Message]) -> None:
        """Declare the message types this service publishes (for topology and docs)."""
        for message_type in message_types:
            _wire_name(message_type, self.name)
            if message_type not in self.publishes:
                self.publishes.append(message_type)

    def route(
        self, path: str, *, methods: Sequence[str] = ("GET",)
    ) -> Callable[[Endpoint], Endpoint]:
        """Mount the decorated Starlette endpoint at ``path`` on the app's HTTP front door.

        The endpoint is ``async def endpoint(request, ctx) -> Response`` (an
        :data:`Endpoint`): a Starlette request, and this service's
        :class:`~actorbus.app.ServiceContext` (its state, ``publish``, ``send``).
        Needs the ``http`` extra.
        """

        def decorator(endpoint: Endpoint) -> Endpoint:
            self.routes.append((path, endpoint, tuple(methods)))
            return endpoint

        return decorator

    def startup(self, hook: Startup) -> Startup:
        """Run ``hook(service_context)`` when the app starts, before consuming begins.

        If it raises, the app does not start and the error propagates.
        """
        self.on_startup.append(hook)
        return hook

    def background(self, task: Startup) -> Startup:
        """Run ``task(service_context)`` for as long as the app runs (e.g. an outbox relay).

        It starts after consuming has begun and is cancelled when the app stops, before
        consuming stops. If it raises, the app stops with that error.
        """
        self.background_tasks.append(task)
        return task

    def shutdown(self, hook: Startup) -> Startup:
        """Run ``hook(service_context)`` when the app stops, after consuming has stopped."""
        self.on_shutdown.append(hook)
        return hook

    def topology(self) -> Topology:
        """Return what this service needs declared: exchanges, its queue, its bindings."""
        exchanges = {self.exchange: ExchangeSpec(self.exchange, "topic")}
        bindings: list[Binding] = []
        for key, sub in self.subscriptions.items():
            if not sub.bind:
                continue
            if issubclass(sub.message_type, Command):
                exchanges.setdefault(
                    self.command_exchange, ExchangeSpec(self.command_exchange, "direct")
                )
                bindings.append(Binding(self.command_exchange, self.queue.name, key))
            else:
                bindings.append(Binding(self.exchange, self.queue.name, key))
        for message_type in self.publishes:
            if issubclass(message_type, Command):
                exchanges.setdefault(
                    self.command_exchange, ExchangeSpec(self.command_exchange, "direct")
                )
        return Topology(tuple(exchanges.values()), (self.queue,), tuple(bindings))


def _check_handler(handler: Callable[..., Any], message_type: type[Message], service: str) -> None:
    """Refuse at registration what would fail on the first message (five attempts later)."""
    name = getattr(handler, "__qualname__", repr(handler))
    where = f"the handler {name} of {message_type.__qualname__} in service {service!r}"
    call = None if inspect.isroutine(handler) else type(handler).__call__  # a callable object
    if not (inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)):
        raise ConfigurationError(
            f"{where} must be an 'async def' function (it is called as "
            "'await handler(message, ctx)')"
        )
    try:
        inspect.signature(handler).bind(object(), object())
    except TypeError as exc:
        raise ConfigurationError(
            f"{where} must accept two positional arguments, the message and the "
            f"HandlerContext: {exc}"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): let it through
        return


def _wire_name(message_type: type[Message], service: str) -> str:
    key: str | None = getattr(message_type, "__routing_key__", None)
    if not key:
        raise ConfigurationError(
            f"service {service!r}: {message_type.__qualname__} declares no routing key; "
            "declare it as a class keyword: class X(Event, routing_key='x.happened', version=1)"
        )
    return key
