"""Run services on a fresh in-process broker inside a test, with awaitable probes.

Nothing is patched: the services run in a real :class:`~actorbus.App` on a real
:class:`~actorbus.brokers.memory.MemoryBroker`. The harness only *watches* what is published
(through a recording wrapper around the broker) and what is left to do.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from .._clock import Clock
from ..app import App, Inbox, Service
from ..brokers import Delivery, DeliveryCallback, OutboundMessage, Subscription, Topology
from ..brokers.memory import MemoryBroker
from ..messages import SCHEMA_VERSION_HEADER, Command, Envelope, Message

if TYPE_CHECKING:
    from typing import Self

    from ..stores import Store

__all__ = ("Published", "RecordingBroker", "ServiceHarness", "wait_until_idle")

M = TypeVar("M", bound=Message)


class Published:
    """One message that was published and confirmed.

    Attributes:
        exchange: The exchange it went to (``""`` for replies sent straight to a queue).
        envelope: Its metadata: ``type``, ``routing_key``, ids, headers.
        body: The encoded payload.
    """

    __slots__ = ("body", "envelope", "exchange")

    def __init__(self, exchange: str, envelope: Envelope, body: bytes) -> None:
        self.exchange = exchange
        self.envelope = envelope
        self.body = body

    def __repr__(self) -> str:
        return f"Published({self.envelope.type!r}, message_id={self.envelope.message_id!r})"

    def decode(self, message_type: type[M]) -> M:
        """Decode the body as ``message_type``."""
        return msgspec.json.decode(self.body, type=message_type)


class RecordingBroker:
    """A broker wrapper that records every confirmed publish and wakes waiting probes.

    It delegates everything to ``inner``; only successful publishes are recorded.
    """

    def __init__(self, inner: MemoryBroker) -> None:
        self.inner = inner
        self.published: list[Published] = []
        self._changed = anyio.Event()

    def _record(self, messages: Iterable[OutboundMessage]) -> None:
        self.published.extend(Published(m.exchange, m.envelope, m.body) for m in messages)
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        """Wait until the next publish is recorded."""
        await self._changed.wait()

    @property
    def url(self) -> str:
        """The inner broker's URL."""
        return self.inner.url

    @property
    def is_ready(self) -> bool:
        """The inner broker's readiness."""
        return self.inner.is_ready

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    async def declare(self, topology: Topology) -> None:
        """Declare on the inner broker."""
        await self.inner.declare(topology)

    async def publish(self, message: OutboundMessage) -> None:
        """Publish on the inner broker, then record it."""
        await self.inner.publish(message)
        self._record((message,))

    async def publish_batch(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish on the inner broker, then record them (all, or none if any failed)."""
        await self.inner.publish_batch(messages)
        self._record(messages)

    async def consume(
        self, queue: str, on_delivery: DeliveryCallback, *, prefetch: int
    ) -> Subscription:
        """Consume from the inner broker."""
        return await self.inner.consume(queue, on_delivery, prefetch=prefetch)

    async def get(self, queue: str) -> Delivery | None:
        """Get from the inner broker."""
        return await self.inner.get(queue)

    async def queue_depth(self, queue: str) -> int:
        """The inner broker's queue depth."""
        return await self.inner.queue_depth(queue)

    async def purge(self, queue: str) -> int:
        """Purge on the inner broker."""
        return await self.inner.purge(queue)


class ServiceHarness:
    """Run ``services`` on a fresh ``memory://`` broker, inside the test's own task.

    Example::

        async with ServiceHarness([inventory]) as bus:
            await bus.publish(OrderCreated(order_id="o-1", sku="ABC", qty=1))
            [reserved] = await bus.wait_for(StockReserved)
            await bus.wait_until_idle()

    Args:
        services: The services under test.
        clock: A clock for retry delays and supervisor backoff (e.g. a ``ManualClock``).
        data_dir: Where the services keep state; a temporary directory by default.
        inbox: The idempotency inbox; the app's default (in memory) otherwise.
        store: The App's store (a URL such as ``sqlite:///{tmp_path}/t.sqlite3``, or a store):
            the services become durable (see :class:`~actorbus.App`); ``wait_until_idle``
            then also waits for the outbox to be published.
        timeout: How long probes wait before failing with ``TimeoutError``.
    """

    def __init__(
        self,
        services: Iterable[Service],
        *,
        clock: Clock | None = None,
        data_dir: str | Path | None = None,
        inbox: Inbox | None = None,
        store: str | Store | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.broker = MemoryBroker(f"memory://harness-{uuid.uuid4().hex}", clock=clock)
        self.recorder = RecordingBroker(self.broker)
        self._tmp = tempfile.TemporaryDirectory(prefix="actorbus-") if data_dir is None else None
        self.app = App(
            services,
            broker=self.recorder,
            data_dir=data_dir if data_dir is not None else self._tmp.name,  # type: ignore[union-attr]
            inbox=inbox,
            clock=clock,
            store=store,
        )
        self.timeout = timeout

    async def __aenter__(self) -> Self:
        await self.app.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.app.__aexit__(exc_type, exc, tb)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    @property
    def faults(self) -> Any:
        """The memory broker's fault injection (drop the connection, nack publishes, …)."""
        return self.broker.faults

    @property
    def published(self) -> list[Published]:
        """Everything published and confirmed so far, in order."""
        return self.recorder.published

    def published_to(self, routing_key: str) -> list[Published]:
        """What was published with ``routing_key`` (or, for replies, of that type)."""
        return [
            p
            for p in self.recorder.published
            if p.envelope.routing_key == routing_key or p.envelope.type == routing_key
        ]

    async def publish(self, event: Message, *, correlation_id: str | None = None) -> None:
        """Publish ``event`` as a producer outside the services would."""
        await self.app.publish(event, correlation_id=correlation_id)

    async def send(self, command: Command, *, correlation_id: str | None = None) -> None:
        """Send ``command`` as a client outside the services would."""
        await self.app.send(command, correlation_id=correlation_id)

    async def wait_for(
        self,
        message_type: type[M],
        *,
        where: Callable[[M], bool] | None = None,
        count: int = 1,
    ) -> list[M]:
        """Wait until ``count`` messages of ``message_type`` (matching ``where``) were published.

        Returns:
            The first ``count`` matching messages, decoded, in publish order.

        Raises:
            TimeoutError: Fewer were published within the harness's timeout.
        """
        key = message_type.__routing_key__
        version = message_type.__version__
        with anyio.fail_after(self.timeout):
            while True:
                found = [
                    m
                    for p in self.recorder.published
                    # Two versions may share a routing key: only this type's version counts.
                    if p.envelope.type == key
                    and p.envelope.headers.get(SCHEMA_VERSION_HEADER, version) == version
                    for m in (p.decode(message_type),)
                    if where is None or where(m)
                ]
                if len(found) >= count:
                    return found[:count]
                await self.recorder.changed()

    async def wait_until_idle(self) -> None:
        """Wait until no consumed queue holds a ready or unsettled message and no retry waits.

        With a ``ManualClock``, pending retries wait for the clock: advance it first.

        Raises:
            TimeoutError: Still busy after the harness's timeout.
        """
        store = self.app.store
        if store is None:
            await wait_until_idle(self.broker, timeout=self.timeout)
            return
        # A durable App acks a delivery after its COMMIT and publishes its outbox rows after
        # that: idle means the broker is idle *and* the outbox is empty.
        with anyio.fail_after(self.timeout):
            while True:
                await wait_until_idle(self.broker, timeout=self.timeout)
                if await store.outbox.pending() == 0:
                    await anyio.wait_all_tasks_blocked()
                    if self.broker.is_idle():
                        return
                    continue
                await self.broker.wait_for_change()


async def wait_until_idle(broker: MemoryBroker, *, timeout: float = 5.0) -> None:
    """Wait until ``broker`` is idle (see :meth:`MemoryBroker.is_idle`), without polling.

    Each time every task is blocked and work is left (a handler waiting on a thread, a
    retry waiting out its delay), it waits for the broker's next change: a message queued
    or settled.

    Raises:
        TimeoutError: Still busy after ``timeout`` seconds.
    """
    with anyio.fail_after(timeout):
        while True:
            await anyio.wait_all_tasks_blocked()
            if broker.is_idle():
                return
            await broker.wait_for_change()
