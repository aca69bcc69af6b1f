"""Peers: the consume and publish cases written idiomatically with aio-pika and FastStream.

Optional (``pip install 'actorbus[bench-peers]'``): a peer that is not installed is left
out. Each peer gets the same server, queue, prefetch and confirm window as actorbus and raw
aiormq, and is written the way its documentation shows: aio-pika acks each message with
``message.process()``; FastStream decodes into a pydantic model and acks after the handler.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from ._common import PlainOrderCreated, make_plain
from ._stats import Arrivals

__all__ = ("consume_variants", "publish_variants")

_now = time.perf_counter
_TIMEOUT = 120.0

Variant = Callable[[int], Awaitable[Any]]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def consume_variants(url: str, queue: str, prefetch: int) -> dict[str, Variant]:
    """Return ``name → consume(n)`` for the installed peers; the queue holds n messages."""
    variants: dict[str, Variant] = {}
    if _installed("aio_pika"):
        variants["aio-pika"] = lambda n: _aio_pika_consume(url, queue, prefetch, n)
    if _installed("faststream") and _installed("pydantic"):
        variants["faststream"] = lambda n: _faststream_consume(url, queue, prefetch, n)
    return variants


def publish_variants(url: str, exchange: str, routing_key: str, window: int) -> dict[str, Variant]:
    """Return ``name → publish(n)`` for the installed peers."""
    variants: dict[str, Variant] = {}
    if _installed("aio_pika"):
        variants["aio-pika"] = lambda n: _aio_pika_publish(url, exchange, routing_key, window, n)
    if _installed("faststream") and _installed("pydantic"):
        variants["faststream"] = lambda n: _faststream_publish(
            url, exchange, routing_key, window, n
        )
    return variants


# --------------------------------------------------------------------------- aio-pika

_decode = msgspec.json.Decoder(PlainOrderCreated).decode
_encode = msgspec.json.Encoder().encode


async def _aio_pika_consume(url: str, queue: str, prefetch: int, n: int) -> Any:
    import aio_pika

    counter = Arrivals(n)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        q = await channel.get_queue(queue, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                _decode(message.body)
                counter.hit()

        tag = await q.consume(on_message)
        sample = await counter.wait(_TIMEOUT)
        await q.cancel(tag)
    return sample


async def _aio_pika_publish(url: str, exchange: str, routing_key: str, window: int, n: int) -> Any:
    import aio_pika

    from ._stats import Sample

    events = make_plain(n)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        x = await channel.get_exchange(exchange, ensure=False)
        sem = asyncio.Semaphore(window)

        async def one(event: PlainOrderCreated) -> None:
            async with sem:
                await x.publish(
                    aio_pika.Message(
                        _encode(event),
                        content_type="application/json",
                        headers={"x-schema-version": 1},
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=str(event.event_id),
                        timestamp=time.time(),
                        type=routing_key,
                    ),
                    routing_key,
                    mandatory=True,
                )

        start = _now()
        await asyncio.gather(*[one(e) for e in events])
        elapsed = _now() - start
    return Sample(n, elapsed)


# ------------------------------------------------------------------------- FastStream


def _model() -> Any:
    import pydantic
    from pydantic.alias_generators import to_camel

    class OrderCreatedModel(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(alias_generator=to_camel, populate_by_name=True)

        event_id: uuid.UUID
        occurred_at: datetime
        schema_version: int
        order_id: str
        sku: str
        qty: int

    return OrderCreatedModel


async def _faststream_consume(url: str, queue: str, prefetch: int, n: int) -> Any:
    import logging

    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    model = _model()
    counter = Arrivals(n)
    broker = RabbitBroker(url, logger=None, log_level=logging.ERROR)

    @broker.subscriber(RabbitQueue(queue, declare=False), channel=Channel(prefetch_count=prefetch))
    async def handle(body: model) -> None:  # type: ignore[valid-type]
        counter.hit()

    await broker.start()
    try:
        return await counter.wait(_TIMEOUT)
    finally:
        await broker.stop()


async def _faststream_publish(
    url: str, exchange: str, routing_key: str, window: int, n: int
) -> Any:
    import logging

    from faststream.rabbit import RabbitBroker, RabbitExchange

    from ._stats import Sample

    model = _model()
    events = [
        model(**msgspec.to_builtins(e, builtin_types=(uuid.UUID, datetime))) for e in make_plain(n)
    ]
    broker = RabbitBroker(url, logger=None, log_level=logging.ERROR)
    target = RabbitExchange(exchange, declare=False)
    await broker.connect()
    try:
        sem = asyncio.Semaphore(window)

        async def one(event: Any) -> None:
            async with sem:
                await broker.publish(
                    event,
                    exchange=target,
                    routing_key=routing_key,
                    persist=True,
                    mandatory=True,
                    message_id=str(event.event_id),
                    message_type=routing_key,
                    headers={"x-schema-version": 1},
                )

        start = _now()
        await asyncio.gather(*[one(e) for e in events])
        elapsed = _now() - start
    finally:
        await broker.stop()
    return Sample(n, elapsed)
