"""App: composes services on one broker; an ``async with`` lifecycle inside the caller's tasks."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
from anyio.abc import TaskGroup

from .._clock import Clock
from .._log import get_logger
from ..brokers import (
    Broker,
    Delivery,
    ExchangeSpec,
    OutboundMessage,
    Subscription,
    Topology,
    connect,
)
from ..exceptions import ConfigurationError
from ..messages import Command, JsonCodec, Message, MessageRegistry
from ..observe import Console, Tracer, build_tracer, metrics_address, parse_address
from ..runtime import ActorRef, ActorSystem, ChildSpec, SupervisorRef, SupervisorSpec
from ..stores import Store, open_store, run_pruner
from ._context import DEFAULT_REQUEST_TIMEOUT, ServiceContext
from ._durable import DurablePipeline, Settler, StoreHealth
from ._inbox import Inbox, MemoryInbox
from ._outgoing import Outgoing
from ._pipeline import ConsumerActor, Pipeline
from ._relay import OutboxRelay
from ._request import Requester
from ._service import Service

if TYPE_CHECKING:
    from typing import Self

    from ..observe import AppMetrics, CollectorRegistry, SystemModel

__all__ = ("App",)

_log = get_logger("actorbus.app")

R = TypeVar("R", bound=Message)


class App:
    """Services on one broker: declares the topology, supervises consumers, publishes.

    Use it as an async context manager inside your own task group or application::

        async with App([inventory, notification], broker="memory://") as app:
            await app.publish(OrderCreated(order_id="o-1", sku="ABC", qty=1))
            ...

    Entering connects to the broker, declares every exchange and queue, runs the services'
    start-up hooks, starts one supervised consumer actor per ``concurrency`` slot and starts
    consuming. Leaving stops intake, lets in-flight messages finish (up to
    ``drain_timeout``; what is left is requeued by the broker), runs shut-down hooks and
    closes the broker. If a supervisor gives up, leaving raises
    :class:`~actorbus.exceptions.SupervisorGaveUpError`.

    Args:
        services: The services to run; their names must be unique.
        broker: A broker URL (``memory://``, ``amqp://…``) or a broker instance (entered here).
        data_dir: Root of the services' persistent state; each gets ``<data_dir>/<name>``.
        inbox: The idempotency inbox; an in-memory one by default.
        codec: The codec for every message; JSON by default.
        clock: The clock of the actor system (a manual clock in tests).
        drain_timeout: Seconds to let in-flight messages finish on shutdown.
        http: Serve the HTTP front door (the services' routes, ``/healthz``, ``/readyz``,
            ``/metrics``) on ``HOST:PORT``; needs the ``http`` extra. ``None`` serves none.
        metrics: Count Prometheus metrics (into a registry of this App's own, see
            :attr:`metrics`) when ``prometheus-client`` is installed; ``False`` never; a
            ``CollectorRegistry`` to register into that one instead.
        metrics_port: Serve ``GET /metrics`` on a port of its own: ``HOST:PORT``, or a port
            number (on 127.0.0.1); for processes without the HTTP front door. Needs the
            ``metrics`` extra.
        tracing: Carry W3C trace context (``traceparent``) on every message and continue it
            in handlers; with OpenTelemetry, record spans. ``True``: spans if a tracer provider
            is configured globally, else propagation alone; ``False``: nothing; a
            ``TracerProvider``: spans through it.
        exchange: Where :meth:`publish` sends events; the first service's exchange by
            default. Required, and declared, for an App without services (a publisher).
        command_exchange: Where :meth:`send` sends commands; the first service's by default.
        store: A store URL (``sqlite:///data/app.sqlite3``, ``postgresql://…``) or a
            :class:`~actorbus.stores.Store` (entered here). With a store, services are durable
            by default (``Service(durable=...)``): each delivery's inbox record (by the
            payload's ``eventId``), the handler's SQL (``ctx.tx``) and what it publishes
            commit together; an outbox relay publishes after the COMMIT; a pruner trims old
            inbox and outbox rows; readiness includes the store. ``None``: no store.
        console: Serve the operator console at ``/ui`` on the front door (or on the metrics
            port when there is no front door): live graph, queues, actors, dead letters,
            logs. Costs nothing until a page is open.
        admin_token: Enables the console's state-changing actions (replay and purge dead
            letters) for requests that send it; ``None``: those actions are off.
        console_allowed_hosts: Names the console may also be reached by, for a console behind
            a reverse proxy (``"ops.example.com"`` or ``"ops.example.com:8443"``); by default
            only the address the server listens on is accepted as ``Host`` and ``Origin``.
        system_model: What the console shows of the system's static description (graph,
            AsyncAPI, schema check): an :class:`actorbus.describe.ConsoleModel` of the
            services; ``None`` shows the live parts only.

    Attributes:
        metrics: The App's :class:`~actorbus.app._metrics.AppMetrics` (its ``registry`` is
            what ``/metrics`` serves), or ``None`` when metrics are off.
        console: The operator console (``None`` with ``console=False``).
        http_address: The address the front door listens on, once started.
        metrics_address: The address of the metrics port, once started.
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        broker: str | Broker = "memory://",
        data_dir: str | Path = ".actorbus",
        inbox: Inbox | None = None,
        codec: JsonCodec | None = None,
        clock: Clock | None = None,
        drain_timeout: float = 10.0,
        http: str | None = None,
        metrics: bool | CollectorRegistry = True,
        metrics_port: str | int | None = None,
        tracing: Any = True,
        exchange: str | None = None,
        command_exchange: str | None = None,
        store: str | Store | None = None,
        console: bool = True,
        admin_token: str | None = None,
        system_model: SystemModel | None = None,
        console_allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.services: tuple[Service, ...] = tuple(services)
        names = [s.name for s in self.services]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"service names must be unique; repeated: {duplicates}")
        if not self.services and exchange is None:
            raise ConfigurationError(
                "an App without services only publishes: name the exchange its events go "
                "to, e.g. App([], exchange='orders.topic')"
            )
        self.broker: Broker = connect(broker) if isinstance(broker, str) else broker
        self.store: Store | None = open_store(store) if isinstance(store, str) else store
        needs_store = [s.name for s in self.services if s.durable and self.store is None]
        if needs_store:
            raise ConfigurationError(
                f"services {needs_store} are declared durable=True but the App has no store: "
                "pass App(..., store='sqlite:///data/app.sqlite3') (or --store URL)"
            )
        self._health: StoreHealth | None = None
        self._settler_tasks: TaskGroup | None = None
        #: The outbox relay, while running with a store.
        self.relay: OutboxRelay | None = None
        self.data_dir = Path(data_dir)
        self.inbox: Inbox = inbox if inbox is not None else MemoryInbox()
        self.codec = codec or JsonCodec()
        self.registry = MessageRegistry(self.codec)
        for service in self.services:
            for sub in service.subscriptions.values():
                self.registry.register(sub.message_type)
            for old, new, fn in service.upcasters:
                self.registry.add_upcaster(old, new, fn)
        #: Sends requests and matches replies (``App.request``, ``ctx.request``).
        self.requester = Requester(self.broker, self.codec, clock)
        self._clock = clock
        self._tracer: Tracer | None = build_tracer(tracing)
        self.metrics: AppMetrics | None = self._build_metrics(metrics, metrics_port)
        self._metrics_address = metrics_address(metrics_port)
        self.metrics_address: tuple[str, int] | None = None
        self.contexts = {s.name: self._context(s) for s in self.services}
        self._publish = self._publisher("")
        first = self.services[0] if self.services else None
        self.exchange = exchange or (first.exchange if first else "actorbus.events")
        self.command_exchange = command_exchange or (
            first.command_exchange if first else "actorbus.commands"
        )
        self._outgoing = Outgoing(
            self.codec, self.exchange, self.command_exchange, tracer=self._tracer
        )
        self._drain_timeout = drain_timeout
        self._stack: contextlib.AsyncExitStack | None = None
        self._system: ActorSystem | None = None
        self._subscriptions: list[Subscription] = []
        self._running = False
        self._http = parse_address(http) if http is not None else None
        self.http_address: tuple[str, int] | None = None
        self._supervisors: dict[str, SupervisorRef] = {}
        self.console: Console | None = (
            Console(
                _ConsoleView(self),
                system_model,
                admin_token=admin_token,
                allowed_hosts=console_allowed_hosts,
            )
            if console
            else None
        )

    def __repr__(self) -> str:
        return f"App(services={[s.name for s in self.services]}, broker={self.broker.url!r})"

    @property
    def tracer(self) -> Tracer | None:
        """The App's tracer (``None`` with ``tracing=False``)."""
        return self._tracer

    def _publisher(self, service: str) -> Callable[[OutboundMessage], Awaitable[None]]:
        """Return how ``service`` (``""``: the App) publishes: counted when metrics are on."""
        if self.metrics is None:
            return self.broker.publish
        publish: Callable[[OutboundMessage], Awaitable[None]]
        publish = self._measured_publisher(service).publish
        return publish

    def _context(self, service: Service) -> ServiceContext:
        outgoing = Outgoing(
            self.codec, service.exchange, service.command_exchange, tracer=self._tracer
        )
        return ServiceContext(
            service,
            self,
            self.data_dir / service.name,
            outgoing,
            self._publisher(service.name),
            self.store,
            self.requester,
            self._clock,
        )

    def _build_metrics(self, setting: Any, port: str | int | None) -> AppMetrics | None:
        """Decide once whether this App counts metrics; import prometheus_client only if so."""
        if setting is False:
            if port is not None:
                raise ConfigurationError(
                    f"metrics_port={port!r} needs metrics: do not pass metrics=False with it"
                )
            return None
        if importlib.util.find_spec("prometheus_client") is None:
            if port is not None or setting is not True:
                raise ConfigurationError(
                    "metrics need prometheus-client: pip install 'actorbus[metrics]'"
                )
            return None
        from ..observe import AppMetrics  # prometheus-client: only when it is installed

        queues = {s.name: s.queue.name for s in self.services}
        registry = None if setting is True else setting
        metrics = AppMetrics(queues, self.broker, lambda: self.is_ready, registry=registry)
        metrics.requests = self.requester.stats
        return metrics

    def _measured_publisher(self, service: str) -> Any:
        if self.metrics is None:  # pragma: no cover - only called with metrics
            raise RuntimeError("metrics are off")
        broker = self.broker
        return self.metrics.publisher(service, broker.publish, broker.publish_batch)

    # ----------------------------------------------------------------- lifecycle

    def topology(self) -> Topology:
        """Return everything the services need declared on the broker."""
        topology = Topology(exchanges=(ExchangeSpec(self.exchange, "topic"),))
        for service in self.services:
            topology = topology.merge(service.topology())
        return topology

    @property
    def is_ready(self) -> bool:
        """Started, the broker connected, every consumer consuming, and the store answering.

        The store's part is a flag (no round trip per call): it turns false when a delivery,
        a COMMIT or the outbox relay meets an unavailable store, and true again when a ping
        gets through (see :class:`~actorbus.app._durable.StoreHealth`).
        """
        health = self._health
        return self._running and self.broker.is_ready and (health is None or health.ok)

    def durable(self, service: Service) -> bool:
        """Whether ``service``'s deliveries are handled in store transactions."""
        return self.store is not None and service.durable is not False

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise ConfigurationError(f"{self!r} is already running; an App runs once at a time")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.broker)
            stack.push_async_callback(self.requester.close)
            await self.broker.declare(self.topology())
            settlers: list[Settler] = []
            if self.store is not None:
                # Entered after the broker, so closed before it: the relay's last flush
                # still has a broker to publish to.
                await stack.enter_async_context(self.store)
                await self._start_store_tasks(stack, self.store, settlers)
            for service in self.services:
                ctx = self.contexts[service.name]
                await anyio.Path(ctx.data_dir).mkdir(parents=True, exist_ok=True)
                for hook in service.on_startup:
                    await hook(ctx)
                if service.on_shutdown:
                    stack.push_async_callback(self._run_shutdown_hooks, service)
            system = self._system = ActorSystem("actorbus", clock=self._clock)
            await stack.enter_async_context(system)
            stack.push_async_callback(self._stop_consuming)
            await self._start_consumers(system, settlers)
            if self._http is not None:
                await self._start_http(stack, self._http)
            if self._metrics_address is not None:
                await self._start_metrics_server(stack, self._metrics_address)
            # Background tasks start last: the consumers run and the HTTP address is known.
            if any(s.background_tasks for s in self.services):
                tasks = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(tasks.cancel_scope.cancel)
                for service in self.services:
                    for task in service.background_tasks:
                        tasks.start_soon(_await, task(self.contexts[service.name]))
        except BaseException as exc:
            await _close(stack, exc)
            raise
        self._stack = stack
        self._running = True
        _log.info(
            "app_started",
            services=[s.name for s in self.services],
            broker=self.broker.url,
            queues=[s.queue.name for s in self.services],
            store=None if self.store is None else self.store.url,  # password masked
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._running = False
        if stack is None:
            return
        try:
            await _close(stack, exc)
        finally:
            self._system = None
            _log.info("app_stopped", services=[s.name for s in self.services])

    async def _start_store_tasks(
        self, stack: contextlib.AsyncExitStack, store: Store, settlers: list[Settler]
    ) -> None:
        """Start the store's health watch, outbox relay and pruner; stop them in order.

        On exit (after the consumers stopped): the settlers ack what committed, the relay
        publishes what it can within ``drain_timeout``, then the tasks are cancelled and the
        store is closed.
        """
        health = self._health = StoreHealth(store)
        publish_batch = (
            self.broker.publish_batch
            if self.metrics is None
            else self._measured_publisher("").publish_batch
        )
        relay = self.relay = OutboxRelay(
            store,
            publish_batch,
            health,
            command_exchanges={self.command_exchange} | {s.command_exchange for s in self.services},
        )
        tasks = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tasks.cancel_scope.cancel)
        await tasks.start(health.run)
        await tasks.start(run_pruner, store)
        await tasks.start(relay.run)

        async def drain() -> None:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self._drain_timeout):
                    for settler in settlers:
                        await settler.close()
                await relay.close(self._drain_timeout)

        stack.push_async_callback(drain)
        self._settler_tasks = tasks

    async def _start_consumers(self, system: ActorSystem, settlers: list[Settler]) -> None:
        for service in self.services:
            if not service.subscriptions:
                continue
            metrics = self.metrics
            queue_metrics = (
                None
                if metrics is None
                else metrics.queue(service.name, service.queue.name, service.subscriptions)
            )
            pipeline: Pipeline
            # Decided once per pipeline, here: the in-memory path is untouched by stores.
            if self.durable(service):
                if self.store is None or self._health is None:  # pragma: no cover - checked
                    raise ConfigurationError("a durable service needs a store")
                durable = DurablePipeline(
                    service,
                    self.registry,
                    self.broker,
                    self.contexts[service.name].outgoing,
                    self.contexts[service.name],
                    self.store,
                    self._health,
                    tracer=self._tracer,
                    metrics=queue_metrics,
                )
                if self._settler_tasks is None:  # pragma: no cover - set with the store
                    raise ConfigurationError("the store's tasks are not running")
                await self._settler_tasks.start(durable.settler.run)
                settlers.append(durable.settler)
                pipeline = durable
            else:
                pipeline = Pipeline(
                    service,
                    self.registry,
                    self.broker,
                    self.inbox if service.dedupe else None,
                    self.contexts[service.name].outgoing,
                    self.contexts[service.name],
                    tracer=self._tracer,
                    metrics=queue_metrics,
                    publish_batch=None
                    if metrics is None
                    else self._measured_publisher(service.name).publish_batch,
                )
            names = [f"{service.name}.consumer-{i}" for i in range(service.concurrency)]
            spec = SupervisorSpec(
                service.name,
                [
                    ChildSpec(
                        name,
                        (lambda p=pipeline: ConsumerActor(p)),  # type: ignore[misc]
                        mailbox_size=service.prefetch,
                    )
                    for name in names
                ],
            )
            supervisor = await system.start(spec)
            self._supervisors[service.name] = supervisor
            refs = [supervisor.child(name) for name in names]
            if metrics is not None:
                metrics.watch(service.name, supervisor, refs)
            for ref in refs:
                sub = await self.broker.consume(
                    service.queue.name, _deliver_to(ref), prefetch=service.prefetch
                )
                self._subscriptions.append(sub)

    async def _start_http(self, stack: contextlib.AsyncExitStack, address: tuple[str, int]) -> None:
        # The http extra (Starlette, uvicorn): imported only when a front door is served.
        from ..observe import HttpServer
        from ._front_door import build_asgi

        host, port = address
        server = HttpServer(self._with_console(build_asgi(self), serving=True), host, port)
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.push_async_callback(server.stop)
        if self.console is not None:  # before the server stops: it waits for open streams
            stack.callback(self.console.close)
        await tg.start(server.run)
        self.http_address = server.address

    def _with_console(self, asgi: Any, *, serving: bool = False) -> Any:
        """Return ``asgi`` with the console mounted at ``/ui`` (unless it is off).

        ``serving``: our own server is about to serve it (in the event loop), so the console
        gets ready to end its event streams when that server stops.
        """
        if self.console is None:
            return asgi
        if serving:
            self.console.open()
        return self.console.wrap(asgi)

    async def _start_metrics_server(
        self, stack: contextlib.AsyncExitStack, address: tuple[str, int]
    ) -> None:
        from ..observe import HttpServer, metrics_asgi  # uvicorn: only with a metrics port

        if self.metrics is None:  # pragma: no cover - checked in __init__
            raise ConfigurationError("metrics_port needs metrics")
        host, port = address
        asgi = metrics_asgi(self.metrics.registry)
        if self._http is None:  # no front door: the console is served here instead
            asgi = self._with_console(asgi, serving=True)
        server = HttpServer(asgi, host, port, what="metrics", option="--metrics")
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.push_async_callback(server.stop)
        if self.console is not None and self._http is None:
            stack.callback(self.console.close)
        await tg.start(server.run)
        self.metrics_address = server.address

    def asgi(self) -> Any:
        """Return the ASGI app of the HTTP front door, to mount in your own ASGI server."""
        from ._front_door import build_asgi  # the http extra: only when asked for

        return self._with_console(build_asgi(self))

    async def _stop_consuming(self) -> None:
        """Stop intake, then let the actors finish what they hold (bounded by the timeout)."""
        with anyio.CancelScope(shield=True):
            subs, self._subscriptions = self._subscriptions, []
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.cancel()
            if self._system is not None:
                await self._system.stop(timeout=self._drain_timeout)
            self._supervisors.clear()

    async def _run_shutdown_hooks(self, service: Service) -> None:
        ctx = self.contexts[service.name]
        for hook in reversed(service.on_shutdown):
            await hook(ctx)

    # -------------------------------------------------------------- publishing

    async def publish(
        self, event: Message, *, correlation_id: str | None = None, causation_id: str | None = None
    ) -> None:
        """Publish ``event`` to the events exchange and wait for the broker's confirm.

        It continues the current trace, or starts one.
        """
        await self._publish(
            self._outgoing.build(event, correlation_id=correlation_id, causation_id=causation_id)
        )

    async def send(
        self,
        command: Command,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Send ``command`` to the service that handles it and wait for the broker's confirm."""
        await self._publish(
            self._outgoing.build(
                command,
                correlation_id=correlation_id,
                causation_id=causation_id,
                reply_to=reply_to,
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
        """Send ``command`` and return its reply, decoded as ``reply`` (from outside handlers).

        Example::

            result = await app.request(ReserveStock(order_id="o-1", items=items),
                                       ReserveStockResult, timeout=5)

        Args:
            command: The command; it goes to the one service that handles it.
            reply: The reply's type, or a tuple of the types it may be.
            timeout: Seconds (of the App's clock) to wait once the broker took the command.
            correlation_id: The business flow's id, carried to the reply.
            causation_id: The id of the message that caused this request.

        Raises:
            RequestTimeoutError: No reply within ``timeout``; a later one is dropped and
                counted in ``app.requester.stats.late_replies``.
            UnroutableError: No service handles the command (at once, not after the timeout).
            UnexpectedReplyError: The reply is of another type.
        """
        build = self._outgoing.build
        return await self.requester.request(
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

    async def serve_forever(self) -> None:
        """Wait until cancelled (e.g. by a signal) or until a supervisor gives up."""
        await anyio.sleep_forever()


class _ConsoleView:
    """What the console reads of an App (:class:`~actorbus.observe.ConsoleHost`)."""

    __slots__ = ("_app",)

    def __init__(self, app: App) -> None:
        self._app = app

    @property
    def broker(self) -> Broker:
        return self._app.broker

    @property
    def is_ready(self) -> bool:
        return self._app.is_ready

    @property
    def queues(self) -> dict[str, str]:
        return {s.name: s.queue.name for s in self._app.services if s.subscriptions}

    @property
    def supervisors(self) -> dict[str, SupervisorRef]:
        return self._app._supervisors

    @property
    def subscriptions(self) -> list[Subscription]:
        return self._app._subscriptions

    @property
    def metrics(self) -> AppMetrics | None:
        return self._app.metrics


async def _close(stack: contextlib.AsyncExitStack, exc: BaseException | None) -> None:
    """Unwind ``stack``; raise a lone error from a task group as itself, not as a group.

    Callers can then ``except SupervisorGaveUpError`` (the CLI maps it to exit code 1) or
    ``except ConfigurationError``, whichever task group it came through.
    """
    try:
        await stack.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from group
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    cancelled = anyio.get_cancelled_exc_class()
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        elif not isinstance(exc, cancelled):
            found.append(exc)
    return found


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable


def _deliver_to(ref: ActorRef) -> Any:
    """Return the broker callback that puts a delivery in ``ref``'s mailbox.

    The mailbox holds ``prefetch`` messages, so ``tell_nowait`` always has room. If it ever
    has not (an over-delivering broker, or an actor being stopped), the delivery is left
    unsettled: the broker requeues it when the subscription closes, so nothing is lost.
    """
    tell_nowait = ref.tell_nowait

    def on_delivery(delivery: Delivery) -> None:
        try:
            tell_nowait(delivery)
        except Exception as exc:
            _log.warning(
                "delivery_not_accepted", actor=ref.name, queue=delivery.queue, error=str(exc)
            )

    return on_delivery
