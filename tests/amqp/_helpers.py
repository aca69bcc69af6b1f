"""Helpers of the AMQP broker tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from actorbus.brokers import Binding, ExchangeSpec, QueueSpec, Topology
from actorbus.brokers.amqp import AmqpBroker


async def declare_routed(
    broker: AmqpBroker, unique: str, **options: object
) -> tuple[str, QueueSpec]:
    """Declare ``<unique>.topic`` and ``<unique>.q`` bound by ``order.#``; return both.

    ``options`` go to the :class:`QueueSpec` (retry tiers default to 0.05 s and 0.2 s).
    """
    exchange = f"{unique}.topic"
    options.setdefault("retry_delays", (0.05, 0.2))
    spec = QueueSpec(f"{unique}.q", **options)  # type: ignore[arg-type]
    await broker.declare(
        Topology(
            exchanges=(ExchangeSpec(exchange),),
            queues=(spec,),
            bindings=(Binding(exchange, spec.name, "order.#"),),
        )
    )
    return exchange, spec


async def eventually(
    probe: Callable[[], Awaitable[bool] | bool], *, timeout: float = 20.0, what: str = ""
) -> None:
    """Poll external state (consumer counts, readiness) until true, bounded by ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            result = probe()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or probe!r}")
