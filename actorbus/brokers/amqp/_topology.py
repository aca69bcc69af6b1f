"""Declaring exchanges, queues, dead-letter and retry queues, and bindings on RabbitMQ.

For a :class:`~actorbus.brokers.QueueSpec` named ``q`` this declares:

- ``q`` itself (durable; classic or quorum), dead-lettering through the default exchange to
  ``q.dlq`` (``x-dead-letter-exchange = ""``, ``x-dead-letter-routing-key = "q.dlq"``), so
  that ``nack(requeue=False)`` and ``x-delivery-limit`` land there without a DLX exchange;
- ``q.dlq``, a plain queue of the same type;
- one ``q.retry.<ms>`` queue per retry tier, with a queue-level ``x-message-ttl`` of ``ms``
  and dead-lettering back to ``q`` through the default exchange. A per-message TTL would
  only expire at the head of one shared queue (a long delay would hold back a short one),
  hence one queue per tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiormq.abc

from .._protocol import (
    DEFAULT_EXCHANGE,
    Binding,
    ExchangeSpec,
    QueueSpec,
    Topology,
    nearest_tier,
)
from ._errors import translate

__all__ = (
    "declare_topology",
    "dlq_arguments",
    "pick_retry_queue",
    "queue_arguments",
    "retry_queue_arguments",
    "retry_queue_name",
    "retry_tiers_ms",
)


def retry_tiers_ms(spec: QueueSpec) -> tuple[int, ...]:
    """Return the retry tiers of ``spec`` in whole milliseconds, sorted, without duplicates."""
    return tuple(sorted({max(1, round(d * 1000)) for d in spec.retry_delays if d >= 0}))


def retry_queue_name(queue: str, ms: int) -> str:
    """Return the name of ``queue``'s retry queue for a delay of ``ms`` milliseconds."""
    return f"{queue}.retry.{ms}"


def pick_retry_queue(queue: str, tiers_ms: Sequence[int], delay: float) -> str | None:
    """Return the retry queue for ``delay`` seconds: the tier nearest to it, or ``None``.

    See :func:`actorbus.brokers.nearest_tier`.
    """
    if not tiers_ms:
        return None
    return retry_queue_name(queue, int(nearest_tier(tiers_ms, delay * 1000)))


def _type_arguments(spec: QueueSpec) -> dict[str, Any]:
    # A classic queue is declared without x-queue-type, so that queues created by other
    # clients (which usually omit it) are not reported as inequivalent.
    return {"x-queue-type": "quorum"} if spec.queue_type == "quorum" else {}


def queue_arguments(spec: QueueSpec) -> dict[str, Any]:
    """Return the ``queue.declare`` arguments of the work queue ``spec``."""
    args = _type_arguments(spec)
    if spec.dead_letter:
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = spec.dlq_name
    if spec.delivery_limit is not None:
        args["x-delivery-limit"] = spec.delivery_limit
    if spec.single_active_consumer:
        args["x-single-active-consumer"] = True
    if spec.max_length is not None:
        args["x-max-length"] = spec.max_length
    return args


def dlq_arguments(spec: QueueSpec) -> dict[str, Any]:
    """Return the arguments of ``spec``'s dead-letter queue."""
    return _type_arguments(spec)


def retry_queue_arguments(spec: QueueSpec, ms: int) -> dict[str, Any]:
    """Return the arguments of the retry queue of ``spec`` for a tier of ``ms`` milliseconds."""
    args = _type_arguments(spec)
    args["x-message-ttl"] = ms
    args["x-dead-letter-exchange"] = ""
    args["x-dead-letter-routing-key"] = spec.name
    return args


async def _declare_exchange(
    channel: aiormq.abc.AbstractChannel, spec: ExchangeSpec, url: str
) -> None:
    if spec.name == DEFAULT_EXCHANGE or spec.name.startswith("amq."):
        return  # predeclared by the broker; declaring them is refused (403)
    try:
        await channel.exchange_declare(spec.name, exchange_type=spec.type, durable=spec.durable)
    except Exception as exc:
        raise translate(exc, url=url, subject=f"exchange {spec.name!r}") from exc


async def _declare_queue(
    channel: aiormq.abc.AbstractChannel,
    name: str,
    durable: bool,
    arguments: dict[str, Any],
    url: str,
) -> None:
    try:
        await channel.queue_declare(name, durable=durable, arguments=arguments)
    except Exception as exc:
        raise translate(exc, url=url, subject=f"queue {name!r}") from exc


async def declare_queue(channel: aiormq.abc.AbstractChannel, spec: QueueSpec, url: str) -> None:
    """Declare ``spec``'s dead-letter queue, retry queues and the queue itself.

    Raises:
        TopologyError: A declaration clashes with an existing queue.
    """
    # The queue first, so that a clash names it rather than one of its companions.
    await _declare_queue(channel, spec.name, spec.durable, queue_arguments(spec), url)
    durable = spec.durable or spec.queue_type == "quorum"
    if spec.dead_letter:
        await _declare_queue(channel, spec.dlq_name, durable, dlq_arguments(spec), url)
    for ms in retry_tiers_ms(spec):
        name = retry_queue_name(spec.name, ms)
        await _declare_queue(channel, name, durable, retry_queue_arguments(spec, ms), url)


async def declare_binding(channel: aiormq.abc.AbstractChannel, binding: Binding, url: str) -> None:
    """Bind ``binding.queue`` to ``binding.exchange``; the default exchange needs no binding.

    Raises:
        TopologyError: The exchange or queue does not exist, or access was refused.
    """
    if binding.exchange == DEFAULT_EXCHANGE:
        return
    try:
        await channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
    except Exception as exc:
        subject = f"binding {binding.exchange!r} -> {binding.queue!r} ({binding.routing_key!r})"
        raise translate(exc, url=url, subject=subject) from exc


async def declare_topology(
    channel: aiormq.abc.AbstractChannel, topology: Topology, url: str
) -> None:
    """Declare exchanges, then queues (with dead-letter and retry queues), then bindings.

    Declaring the same topology twice is harmless. The first failure closes ``channel``
    (AMQP semantics), so it must be a channel used for declarations only.

    Raises:
        TopologyError: A declaration clashes with what exists on the broker; the message
            names the queue or exchange, the argument and both values.
    """
    for exchange in topology.exchanges:
        await _declare_exchange(channel, exchange, url)
    for queue in topology.queues:
        await declare_queue(channel, queue, url)
    for binding in topology.bindings:
        await declare_binding(channel, binding, url)
