"""Message base types: class keywords, envelope fields, defaults, declaration errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

import msgspec
import pytest

from actorbus.exceptions import ConfigurationError
from actorbus.messages import Command, Event, Message, MessageMeta

from ._types import OrderCreated, OrderCreatedV2, ParcelShippedV2, ReserveStock


def test_class_keywords_set_routing_key_and_version() -> None:
    assert OrderCreated.__routing_key__ == "order.created"
    assert OrderCreated.__version__ == 1
    assert OrderCreatedV2.__routing_key__ == "order.created.v2"
    assert OrderCreatedV2.__version__ == 2
    assert ReserveStock.__routing_key__ == "inventory.reserve-stock"


def test_version_defaults_to_one() -> None:
    class Pinged(Event, routing_key="ping.sent"):
        at: int

    assert Pinged.__version__ == 1
    assert Pinged(at=1).schema_version == 1


def test_schema_version_defaults_to_class_version() -> None:
    assert OrderCreated(order_id="o", sku="s", qty=1).schema_version == 1
    assert ParcelShippedV2(parcel_id="p", carrier="c").schema_version == 2


def test_schema_version_is_the_class_version_on_the_wire() -> None:
    # Literal[version]: msgspec itself rejects a payload that states another version, and
    # takes one that omits it as the class's version.
    assert ParcelShippedV2.__annotations__["schema_version"] == Literal[2]
    decode = msgspec.json.Decoder(ParcelShippedV2).decode
    envelope = (
        b'{"eventId":"1b4e28ba-2fa1-41d2-883f-0016d3cca427","occurredAt":"2024-05-01T12:00:00Z",'
    )
    assert decode(envelope + b'"parcelId":"p","carrier":"c"}').schema_version == 2
    assert decode(envelope + b'"parcelId":"p","carrier":"c","schemaVersion":2}').schema_version == 2
    with pytest.raises(
        msgspec.ValidationError, match=r"Invalid enum value 1 - at `\$.schemaVersion`"
    ):
        decode(envelope + b'"parcelId":"p","carrier":"c","schemaVersion":1}')
    # The base types keep a plain int: they are never decoded.
    assert Message.__annotations__["schema_version"] in (int, "int")


def test_envelope_fields_are_filled() -> None:
    before = datetime.now(UTC)
    message = OrderCreated(order_id="o-1", sku="apple", qty=2)
    after = datetime.now(UTC)
    assert isinstance(message.event_id, uuid.UUID)
    assert message.event_id.version == 4
    assert before <= message.occurred_at <= after
    assert message.occurred_at.tzinfo is UTC
    assert message.message_id == str(message.event_id)


def test_each_message_gets_a_new_event_id() -> None:
    first = OrderCreated(order_id="o", sku="s", qty=1)
    second = OrderCreated(order_id="o", sku="s", qty=1)
    assert first.event_id != second.event_id


def test_fields_are_keyword_only_and_messages_frozen() -> None:
    with pytest.raises(TypeError):
        OrderCreated("o", "s", 1)  # type: ignore[call-arg, arg-type]
    message = OrderCreated(order_id="o", sku="s", qty=1)
    with pytest.raises(AttributeError):
        message.qty = 5  # type: ignore[misc]


def test_wire_names_are_camel_case_in_field_order() -> None:
    assert ReserveStock.__struct_encode_fields__ == (
        "eventId",
        "occurredAt",
        "schemaVersion",
        "orderId",
        "items",
    )


def test_abstract_types_have_empty_routing_key_not_inherited() -> None:
    class Audited(OrderCreated):
        auditor: str = "x"

    assert Message.__routing_key__ == ""
    assert Event.__version__ == 0
    assert Command.__routing_key__ == ""
    assert Audited.__routing_key__ == ""
    assert Audited.__version__ == 0


def test_subclass_of_concrete_type_can_declare_its_own_key() -> None:
    class OrderCreatedAudited(OrderCreated, routing_key="order.created.audited", version=3):
        auditor: str

    message = OrderCreatedAudited(order_id="o", sku="s", qty=1, auditor="a")
    assert message.schema_version == 3
    assert OrderCreated(order_id="o", sku="s", qty=1).schema_version == 1
    body = msgspec.json.encode(message)
    assert msgspec.json.decode(body, type=OrderCreatedAudited) == message
    with pytest.raises(msgspec.ValidationError, match=r"at `\$.schemaVersion`"):
        msgspec.json.decode(body, type=OrderCreated)


def test_struct_options_that_keep_the_wire_format_pass_through() -> None:
    class Quiet(Event, routing_key="quiet.happened", omit_defaults=True):
        note: str = ""

    body = msgspec.json.encode(Quiet(note=""))
    assert b"note" not in body
    assert b"eventId" in body


@pytest.mark.parametrize(
    "key", ["order.created", "order.created.v2", "inventory.reserve-stock", "a", "x1.y-2.z3"]
)
def test_valid_routing_keys(key: str) -> None:
    class Fine(Event, routing_key=key):
        pass

    assert Fine.__routing_key__ == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "Order.Created",
        "order..created",
        "order.created.",
        ".order",
        "order.*",
        "order.#",
        "order created",
        "order_created",
        "-order",
        "order.-x",
        "order.x-",
        "1order",
        "a" * 256,
        42,
    ],
)
def test_invalid_routing_key_is_a_configuration_error(key: object) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid routing key .* on message type Bad"):

        class Bad(Event, routing_key=key):
            pass


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_invalid_version_is_a_configuration_error(version: object) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid version .* on message type Bad"):

        class Bad(Event, routing_key="bad.thing", version=version):
            pass


def test_version_without_routing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"Bad declares version=2 but no routing key"):

        class Bad(Event, version=2):
            pass


@pytest.mark.parametrize("option", ["routing_ky", "rename", "array_like", "forbid_unknown_fields"])
def test_unsupported_class_keyword_is_a_configuration_error(option: str) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"Bad passes unsupported class keyword\(s\) {option}"
    ):
        MessageMeta("Bad", (Event,), {}, **{"routing_key": "bad.thing", option: True})


def test_missing_required_field_on_construction() -> None:
    with pytest.raises(TypeError, match="qty"):
        OrderCreated(order_id="o", sku="s")  # type: ignore[call-arg]
