"""Request/reply on RabbitMQ (direct reply-to): the cases of tests/unit/app/_request_cases.py."""

from __future__ import annotations

import anyio
import pytest

from actorbus.brokers import (
    REPLY_ADDRESS_PREFIX,
    Binding,
    Delivery,
    ExchangeSpec,
    QueueSpec,
    Topology,
)
from actorbus.brokers.amqp import AmqpBroker
from actorbus.exceptions import UnroutableError
from actorbus.messages import Envelope, OutboundMessage

from ..unit.app import _request_cases as cases

pytestmark = [pytest.mark.amqp, pytest.mark.anyio]


async def test_request_returns_the_typed_reply(amqp_url: str) -> None:
    await cases.happy_path(amqp_url)


async def test_request_times_out_on_the_app_clock(amqp_url: str) -> None:
    await cases.times_out_on_the_clock(amqp_url)


async def test_a_late_reply_is_dropped_and_counted(amqp_url: str) -> None:
    await cases.drops_a_late_reply(amqp_url)


async def test_an_unroutable_command_fails_at_once(amqp_url: str) -> None:
    await cases.unroutable_fails_at_once(amqp_url)


async def test_a_handler_requests(amqp_url: str) -> None:
    await cases.requests_from_a_handler(amqp_url)


async def test_the_reply_channel_is_direct_reply_to(amqp_url: str, unique: str) -> None:
    """Requests go out on the channel that consumes amq.rabbitmq.reply-to; no queue is made."""
    got: list[tuple[Envelope, bytes]] = []
    replied = anyio.Event()
    asked: list[Delivery] = []
    arrived = anyio.Event()

    def on_reply(envelope: Envelope, body: bytes) -> None:
        got.append((envelope, body))
        replied.set()

    def on_request(delivery: Delivery) -> None:
        asked.append(delivery)
        arrived.set()

    async with AmqpBroker(amqp_url) as broker:
        queue = f"{unique}.q"
        await broker.declare(
            Topology(
                (ExchangeSpec(f"{unique}.x", "direct"),),
                (QueueSpec(queue),),
                (Binding(f"{unique}.x", queue, "ask"),),
            )
        )
        await broker.consume(queue, on_request, prefetch=1)
        channel = await broker.open_reply_channel(on_reply)
        assert channel.address == REPLY_ADDRESS_PREFIX
        request = Envelope("req-1", "ask", "ask", reply_to=channel.address)
        await channel.publish(OutboundMessage(f"{unique}.x", request, b"{}"))
        with anyio.fail_after(10):
            await arrived.wait()
        reply_to = asked[0].envelope.reply_to
        assert reply_to is not None
        assert reply_to.startswith(REPLY_ADDRESS_PREFIX + ".")
        await asked[0].ack()
        # Mandatory, as ctx.reply() publishes it: a direct reply-to address counts as routed.
        answer = Envelope("rep-1", "answer", reply_to, causation_id="req-1")
        await broker.publish(OutboundMessage("", answer, b'{"ok": true}'))
        with anyio.fail_after(10):
            await replied.wait()
        assert got[0][0].causation_id == "req-1"
        assert got[0][1] == b'{"ok": true}'
        with pytest.raises(UnroutableError):
            await channel.publish(
                OutboundMessage(f"{unique}.x", Envelope("req-2", "nobody", "nobody"), b"{}")
            )
        await channel.close()
