"""Outgoing: the one builder of outbound envelopes (ids, wire name, headers, address)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from actorbus import Command, Event
from actorbus.app._outgoing import Outgoing
from actorbus.exceptions import ConfigurationError
from actorbus.messages import SCHEMA_VERSION_HEADER, JsonCodec


class OrderCreated(Event, routing_key="order.created"):
    order_id: str
    sku: str
    qty: int


class ReserveStock(Command, routing_key="reserve.stock"):
    order_id: str


def _outgoing() -> Outgoing:
    return Outgoing(JsonCodec(), "orders.topic", "orders.commands")


def test_the_envelope_of_an_event() -> None:
    message = OrderCreated(
        occurred_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC), order_id="o", sku="s", qty=1
    )
    before = time.time()
    out = _outgoing().build(
        message, correlation_id="o", causation_id="c-1", headers={"traceparent": "t"}
    )
    envelope = out.envelope
    assert out.exchange == "orders.topic"
    assert out.mandatory is False  # an event nobody listens to is not an error
    assert envelope.message_id == message.message_id
    assert uuid.UUID(envelope.message_id) == message.event_id
    assert envelope.type == envelope.routing_key == "order.created"
    assert envelope.correlation_id == "o"
    assert envelope.causation_id == "c-1"
    assert envelope.content_type == "application/json"
    assert envelope.timestamp is not None
    assert before <= envelope.timestamp <= time.time()  # when published; occurredAt is in the body
    assert dict(envelope.headers) == {SCHEMA_VERSION_HEADER: 1, "traceparent": "t"}
    assert JsonCodec().decode(out.body, OrderCreated) == message


def test_commands_and_replies_are_addressed_and_mandatory() -> None:
    outgoing = _outgoing()
    command = outgoing.build(ReserveStock(order_id="o"), reply_to="orders.queue")
    assert (command.exchange, command.envelope.routing_key) == ("orders.commands", "reserve.stock")
    assert command.envelope.reply_to == "orders.queue"
    assert command.mandatory is True
    reply = outgoing.build(ReserveStock(order_id="o"), to_queue="orders.queue")
    assert (reply.exchange, reply.envelope.routing_key) == ("", "orders.queue")
    assert reply.mandatory is True


def test_a_message_without_a_routing_key_is_refused() -> None:
    class Note(Event):
        text: str

    with pytest.raises(ConfigurationError, match=r"cannot publish .*Note: it declares no"):
        _outgoing().build(Note(text="x"))
