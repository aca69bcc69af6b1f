"""MessageRegistry and MessageDecoder: trusted types, versions, upcasting on decode."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorbus.exceptions import (
    ConfigurationError,
    DecodeError,
    MessageError,
    MessageTooLargeError,
    UnknownMessageTypeError,
    UnsupportedVersionError,
)
from actorbus.messages import (
    Event,
    JsonCodec,
    Message,
    MessageDecoder,
    MessageRegistry,
)

from ._types import (
    LineItem,
    OrderCreated,
    OrderCreatedV2,
    ParcelShipped,
    ParcelShippedV2,
    ParcelShippedV3,
    ReserveStock,
    StockRejected,
    order_created_to_v2,
    parcel_v1_to_v2,
    parcel_v2_to_v3,
)

# What every producer sends (and decoding requires): the tests here are about the rest.
_ENVELOPE = {
    "eventId": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
    "occurredAt": "2024-05-01T12:00:00Z",
}


def _body(**fields: object) -> bytes:
    """A payload as a producer sends it: the envelope fields, then ``fields``."""
    return json.dumps({**_ENVELOPE, **fields}).encode()


@pytest.fixture
def registry() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(OrderCreated, OrderCreatedV2, StockRejected, ReserveStock)
    return registry


@pytest.fixture
def parcels() -> MessageRegistry:
    registry = MessageRegistry()
    registry.register(ParcelShipped, ParcelShippedV2, ParcelShippedV3)
    registry.add_upcaster(ParcelShipped, ParcelShippedV2, parcel_v1_to_v2)
    registry.add_upcaster(ParcelShippedV2, ParcelShippedV3, parcel_v2_to_v3)
    return registry


# ------------------------------------------------------------------------ registration


def test_register_and_look_up(registry: MessageRegistry) -> None:
    assert registry.types == (OrderCreated, OrderCreatedV2, StockRejected, ReserveStock)
    assert registry.names == {
        "order.created",
        "order.created.v2",
        "stock.rejected",
        "inventory.reserve-stock",
    }
    assert registry.get("order.created", 1) is OrderCreated
    assert registry.versions("order.created.v2") == {2: OrderCreatedV2}
    assert OrderCreated in registry
    assert ParcelShipped not in registry


def test_registering_the_same_type_again_is_a_no_op(registry: MessageRegistry) -> None:
    registry.register(OrderCreated, OrderCreated)
    assert registry.types.count(OrderCreated) == 1


def test_two_types_with_one_name_and_version_are_refused(registry: MessageRegistry) -> None:
    class OrderCreatedAgain(Event, routing_key="order.created", version=1):
        order_id: str

    with pytest.raises(
        ConfigurationError,
        match=r"cannot register .*OrderCreatedAgain as 'order.created' version 1: "
        r"tests.unit.messages._types.OrderCreated is already registered",
    ):
        registry.register(OrderCreatedAgain)
    assert registry.get("order.created", 1) is OrderCreated


def test_duplicates_within_one_call_are_refused_and_nothing_is_registered() -> None:
    class A(Event, routing_key="dup.name"):
        pass

    class B(Event, routing_key="dup.name"):
        pass

    registry = MessageRegistry()
    with pytest.raises(ConfigurationError, match=r"as 'dup.name' version 1: .*A is already"):
        registry.register(StockRejected, A, B)
    assert registry.types == ()


def test_abstract_type_cannot_be_registered() -> None:
    class Audited(Event):
        auditor: str

    with pytest.raises(
        ConfigurationError,
        match=r"cannot register .*Audited: it declares no routing key, so it is abstract",
    ):
        MessageRegistry().register(Audited)


@pytest.mark.parametrize("not_a_message", [dict, int, "order.created", Message.__class__])
def test_non_message_cannot_be_registered(not_a_message: object) -> None:
    with pytest.raises(ConfigurationError, match=r"only subclasses of Event or Command"):
        MessageRegistry().register(not_a_message)  # type: ignore[arg-type]


def test_message_base_types_cannot_be_registered() -> None:
    for base in (Message, Event):
        with pytest.raises(ConfigurationError, match=r"declares no routing key"):
            MessageRegistry().register(base)


# ---------------------------------------------------------------------------- decoding


def test_decode_by_name(registry: MessageRegistry) -> None:
    message = OrderCreated(order_id="o", sku="s", qty=2)
    decoded = registry.decode("order.created", registry.encode(message))
    assert decoded == message
    assert type(decoded) is OrderCreated


def test_decoder_is_built_once_and_cached(registry: MessageRegistry) -> None:
    decoder = registry.decoder("order.created")
    assert registry.decoder("order.created") is decoder
    assert registry.decoder("order.created", target=OrderCreated) is not decoder
    assert registry.decoder("order.created", target=OrderCreated) is registry.decoder(
        "order.created", target=OrderCreated
    )
    assert isinstance(decoder, MessageDecoder)
    assert (decoder.name, decoder.target, decoder.versions) == ("order.created", OrderCreated, (1,))


def test_registration_forgets_built_decoders(registry: MessageRegistry) -> None:
    decoder = registry.decoder("order.created")
    registry.register(ParcelShipped)
    assert registry.decoder("order.created") is not decoder


def test_unknown_type_name(registry: MessageRegistry) -> None:
    with pytest.raises(
        UnknownMessageTypeError,
        match=r"unknown message type 'order.deleted': only registered types are decoded "
        r"\(registered: inventory.reserve-stock, order.created, order.created.v2, "
        r"stock.rejected\)",
    ):
        registry.decoder("order.deleted")
    with pytest.raises(UnknownMessageTypeError):
        registry.decode("order.deleted", b"{}")
    with pytest.raises(UnknownMessageTypeError):
        registry.get("order.deleted", 1)


def test_unknown_version_in_payload(registry: MessageRegistry) -> None:
    body = _body(orderId="o", sku="s", qty=1, schemaVersion=7)
    with pytest.raises(
        UnsupportedVersionError,
        match=r"unsupported schemaVersion 7 for 'order.created' \(supported: 1\)",
    ) as info:
        registry.decode("order.created", body)
    assert info.value.version == 7
    assert info.value.supported == (1,)


def test_unknown_version_in_header(registry: MessageRegistry) -> None:
    body = _body(orderId="o", sku="s", qty=1)
    with pytest.raises(UnsupportedVersionError, match=r"unsupported schemaVersion 2 for"):
        registry.decoder("order.created").decode(body, 2)
    with pytest.raises(UnsupportedVersionError, match=r"unsupported schemaVersion 'x' for"):
        registry.decoder("order.created").decode(body, "x")  # type: ignore[arg-type]


def test_get_unknown_version(registry: MessageRegistry) -> None:
    with pytest.raises(UnsupportedVersionError, match=r"schemaVersion 3 for 'stock.rejected'"):
        registry.get("stock.rejected", 3)


def test_header_version_is_used(registry: MessageRegistry) -> None:
    body = _body(orderId="o", sku="s", qty=1, schemaVersion=1)
    decoder = registry.decoder("order.created", target=OrderCreated)
    assert decoder.decode(body, 1).qty == 1
    assert decoder.decode(body, "1").qty == 1  # type: ignore[arg-type]


def test_header_disagreeing_with_payload_is_a_decode_error(parcels: MessageRegistry) -> None:
    body = _body(parcelId="p", carrier="dhl", schemaVersion=2)
    with pytest.raises(
        DecodeError,
        match=r"cannot decode ParcelShipped \(parcel.shipped v1\): the x-schema-version header "
        r"says 1 but the payload's schemaVersion is 2",
    ) as info:
        parcels.decoder("parcel.shipped").decode(body, 1)
    assert info.value.path == "$.schemaVersion"
    fits_v3 = _body(parcelId="p", carrier="dhl", trackingUrl="u", schemaVersion=2)
    with pytest.raises(DecodeError, match=r"header says 3 but the payload's schemaVersion is 2"):
        parcels.decoder("parcel.shipped").decode(fits_v3, 3)


def test_header_agreeing_with_the_newest_version_but_not_the_payload(
    registry: MessageRegistry, parcels: MessageRegistry
) -> None:
    # The header picks the hot path; the payload's schemaVersion makes msgspec refuse it.
    for decoder, body, header in (
        (registry.decoder("order.created"), _body(orderId="o", sku="s", qty=1, schemaVersion=2), 1),
        (parcels.decoder("parcel.shipped"), _body(parcelId="p", carrier="c", schemaVersion=1), 3),
        (parcels.decoder("parcel.shipped"), _body(parcelId="p", carrier="c", schemaVersion=1), "3"),
    ):
        stated = json.loads(body)["schemaVersion"]
        with pytest.raises(
            DecodeError,
            match=rf"header says {int(header)} but the payload's schemaVersion is {stated}",
        ) as info:
            decoder.decode(body, header)  # type: ignore[arg-type]
        assert info.value.path == "$.schemaVersion"
        assert info.value.__cause__ is None


def test_header_contradiction_is_reported_before_other_errors(parcels: MessageRegistry) -> None:
    decoder = parcels.decoder("parcel.shipped")
    for body in (
        _body(schemaVersion=2, parcelId=1),  # parcelId has the wrong type
        _body(parcelId=1, schemaVersion=2),  # in either order
        _body(schemaVersion=2),  # and required fields are missing
    ):
        with pytest.raises(
            DecodeError, match=r"header says 1 but the payload's schemaVersion is 2"
        ):
            decoder.decode(body, 1)
    # Without a contradiction, the error is the payload's own.
    with pytest.raises(DecodeError, match=r"Expected `str`, got `int` - at `\$.parcelId`"):
        decoder.decode(_body(schemaVersion=1, parcelId=1), 1)
    with pytest.raises(DecodeError, match=r"Expected `int`, got `str` - at `\$.schemaVersion`"):
        decoder.decode(_body(schemaVersion="2", parcelId="p"), 1)


def test_missing_schema_version_with_the_header(parcels: MessageRegistry) -> None:
    decoder = parcels.decoder("parcel.shipped")
    assert decoder.decode(_body(parcelId="p", carrier="c", trackingUrl="u"), 3).tracking_url == "u"
    assert decoder.decode(_body(parcelId="p"), 1).tracking_url == "https://track.example/post/p"


def test_decode_is_a_function_built_once_per_decoder(registry: MessageRegistry) -> None:
    decoder = registry.decoder("order.created")
    decode = decoder.decode
    assert decode is decoder.decode  # an attribute, not a bound method made per access
    assert decode.__doc__ is not None
    assert "x-schema-version" in decode.__doc__
    body = _body(orderId="o", sku="s", qty=2)
    assert decode(body).qty == 2
    assert decode(body, 1).qty == 2
    assert decode(body=body, version=None).qty == 2
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_to_v2)
    upcasting = registry.decoder("order.created", target=OrderCreatedV2).decode
    assert upcasting(body=body, version=1).items == [LineItem("s", 2)]


def test_missing_schema_version_is_the_expected_version(registry: MessageRegistry) -> None:
    message = registry.decode("order.created", _body(orderId="o", sku="s", qty=1))
    assert message.schema_version == 1


def test_decoder_reports_decode_errors_with_type_and_path(registry: MessageRegistry) -> None:
    decoder = registry.decoder("order.created")
    with pytest.raises(
        DecodeError,
        match=r"cannot decode OrderCreated \(order.created v1\): Expected `int`, got `str` - "
        r"at `\$.qty`; payload starts b'\{\"eventId\"",
    ):
        decoder.decode(_body(orderId="o", sku="s", qty="1"))
    with pytest.raises(DecodeError, match=r"malformed JSON"):
        decoder.decode(b"{")
    with pytest.raises(DecodeError, match=r"Expected `object`, got `array`"):
        decoder.decode(b"[]")
    with pytest.raises(DecodeError, match=r"Object missing required field `sku`"):
        decoder.decode(_body(orderId="o", qty=1), 1)


def test_decoder_enforces_the_size_limit() -> None:
    registry = MessageRegistry(JsonCodec(max_size=64))
    registry.register(OrderCreated)
    body = _body(orderId="o" * 64, sku="s", qty=1)
    for version in (None, 1):
        with pytest.raises(MessageTooLargeError, match=r"exceeds the limit of 64 bytes"):
            registry.decoder("order.created").decode(body, version)


def test_unknown_fields_and_missing_optional_fields_via_decoder(
    registry: MessageRegistry,
) -> None:
    message = registry.decoder("stock.rejected").decode(
        _body(orderId="o", reason="none left", future={"x": 1}, schemaVersion=1)
    )
    assert message == StockRejected(
        event_id=message.event_id, occurred_at=message.occurred_at, order_id="o", reason="none left"
    )


def test_commands_have_the_same_envelope_fields(registry: MessageRegistry) -> None:
    command = ReserveStock(order_id="o", items=[LineItem("a", 2)])
    body = registry.encode(command)
    assert set(json.loads(body)) == {"eventId", "occurredAt", "schemaVersion", "orderId", "items"}
    assert registry.decode("inventory.reserve-stock", body) == command


# --------------------------------------------------------------------------- upcasting


def test_upcast_across_names_v1_name_to_v2_type(registry: MessageRegistry) -> None:
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_to_v2)
    original = OrderCreated(order_id="o-1", sku="apple", qty=3)
    decoder = registry.decoder("order.created", target=OrderCreatedV2)
    upcast = decoder.decode(registry.encode(original))
    assert upcast == OrderCreatedV2(
        event_id=original.event_id,
        occurred_at=original.occurred_at,
        order_id="o-1",
        customer_id="unknown",
        items=[LineItem("apple", 3)],
    )
    assert upcast.schema_version == 2
    # The same decoder with the header version takes the same path.
    assert decoder.decode(registry.encode(original), 1) == upcast


def test_an_upcast_keeps_the_identity_even_when_the_upcaster_drops_it(
    registry: MessageRegistry,
) -> None:
    def forgetful(old: OrderCreated) -> OrderCreatedV2:  # builds v2 without event_id/occurred_at
        return OrderCreatedV2(order_id=old.order_id, customer_id="c", items=[])

    registry.add_upcaster(OrderCreated, OrderCreatedV2, forgetful)
    original = OrderCreated(order_id="o-1", sku="apple", qty=3)
    upcast = registry.decoder("order.created", target=OrderCreatedV2).decode(
        registry.encode(original)
    )
    assert (upcast.event_id, upcast.occurred_at) == (original.event_id, original.occurred_at)
    assert (upcast.order_id, upcast.schema_version) == ("o-1", 2)


def test_v2_name_is_not_upcast(registry: MessageRegistry) -> None:
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_to_v2)
    message = OrderCreatedV2(order_id="o", customer_id="c", items=[])
    assert registry.decoder("order.created.v2").decode(registry.encode(message)) == message
    # Plain decoding of the v1 name still yields v1 messages.
    v1 = OrderCreated(order_id="o", sku="s", qty=1)
    assert type(registry.decode("order.created", registry.encode(v1))) is OrderCreated


def test_target_without_upcaster_chain_is_a_configuration_error(
    registry: MessageRegistry,
) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"cannot decode 'order.created' into OrderCreatedV2 \(order.created.v2 v2\): no "
        r"registered version of 'order.created' is that type or upcasts to it \(version 1 "
        r"\(OrderCreated\) is registered but has no upcaster chain",
    ):
        registry.decoder("order.created", target=OrderCreatedV2)


def test_unregistered_target_is_a_configuration_error(registry: MessageRegistry) -> None:
    with pytest.raises(ConfigurationError, match=r"ParcelShippedV2: it is not registered"):
        registry.decoder("order.created", target=ParcelShippedV2)


def test_same_name_versions_decode_and_upcast_to_newest(parcels: MessageRegistry) -> None:
    decoder = parcels.decoder("parcel.shipped")
    assert decoder.target is ParcelShippedV3
    assert decoder.versions == (1, 2, 3)
    v1 = ParcelShipped(parcel_id="p1")
    v2 = ParcelShippedV2(parcel_id="p2", carrier="dhl")
    v3 = ParcelShippedV3(parcel_id="p3", carrier="ups", tracking_url="u")
    assert decoder.decode(parcels.encode(v3)) == v3
    from_v2 = decoder.decode(parcels.encode(v2))
    assert from_v2 == ParcelShippedV3(
        event_id=v2.event_id,
        occurred_at=v2.occurred_at,
        parcel_id="p2",
        carrier="dhl",
        tracking_url="https://track.example/dhl/p2",
    )
    from_v1 = decoder.decode(parcels.encode(v1))  # two steps: v1 -> v2 -> v3
    assert isinstance(from_v1, ParcelShippedV3)
    assert from_v1.carrier == "post"
    assert from_v1.tracking_url == "https://track.example/post/p1"
    assert from_v1.event_id == v1.event_id
    for message in (v1, v2, v3):
        header = message.schema_version
        decoded = decoder.decode(parcels.encode(message), header)
        assert isinstance(decoded, ParcelShippedV3)
        assert decoded.parcel_id == message.parcel_id


def test_older_payload_that_fits_the_newest_schema_is_still_upcast(
    parcels: MessageRegistry,
) -> None:
    # A v2 payload that happens to carry a trackingUrl validates as v3, but says version 2.
    body = _body(parcelId="p", carrier="dhl", trackingUrl="stale", schemaVersion=2)
    message = parcels.decoder("parcel.shipped", target=ParcelShippedV3).decode(body)
    assert message.tracking_url == "https://track.example/dhl/p"


def test_payload_without_schema_version_falls_back_to_version_1(
    parcels: MessageRegistry,
) -> None:
    message = parcels.decoder("parcel.shipped", target=ParcelShippedV3).decode(_body(parcelId="p"))
    assert message.carrier == "post"
    assert message.schema_version == 3


def test_error_of_the_expected_version_is_reported(parcels: MessageRegistry) -> None:
    with pytest.raises(
        DecodeError,
        match=r"cannot decode ParcelShippedV3 \(parcel.shipped v3\): "
        r"Expected `str`, got `int` - at `\$.trackingUrl`",
    ):
        parcels.decoder("parcel.shipped").decode(
            _body(parcelId="p", carrier="c", trackingUrl=1, schemaVersion=3)
        )
    with pytest.raises(
        DecodeError, match=r"ParcelShippedV2 \(parcel.shipped v2\): .*required field `carrier`"
    ):
        parcels.decoder("parcel.shipped").decode(_body(parcelId="p", schemaVersion=2))


def test_decoder_to_an_intermediate_version(parcels: MessageRegistry) -> None:
    decoder = parcels.decoder("parcel.shipped", target=ParcelShippedV2)
    assert decoder.versions == (1, 2)
    assert decoder.decode(parcels.encode(ParcelShipped(parcel_id="p"))).carrier == "post"
    v3 = ParcelShippedV3(parcel_id="p", carrier="c", tracking_url="u")
    with pytest.raises(
        UnsupportedVersionError,
        match=r"unsupported schemaVersion 3 for 'parcel.shipped' \(supported: 1, 2\); version 3 "
        r"\(ParcelShippedV3\) is registered but has no upcaster chain to ParcelShippedV2",
    ):
        decoder.decode(parcels.encode(v3))


def test_missing_link_makes_older_versions_unsupported() -> None:
    registry = MessageRegistry()
    registry.add_upcaster(ParcelShippedV2, ParcelShippedV3, parcel_v2_to_v3)
    registry.register(ParcelShipped)
    decoder = registry.decoder("parcel.shipped")
    assert decoder.versions == (2, 3)
    with pytest.raises(UnsupportedVersionError, match=r"version 1 \(ParcelShipped\) is registered"):
        decoder.decode(registry.encode(ParcelShipped(parcel_id="p")))


def test_add_upcaster_registers_both_types() -> None:
    registry = MessageRegistry()
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_to_v2)
    assert registry.types == (OrderCreated, OrderCreatedV2)


def test_add_upcaster_forgets_built_decoders(parcels: MessageRegistry) -> None:
    registry = MessageRegistry()
    registry.register(OrderCreated, OrderCreatedV2)
    with pytest.raises(ConfigurationError):
        registry.decoder("order.created", target=OrderCreatedV2)
    registry.add_upcaster(OrderCreated, OrderCreatedV2, order_created_to_v2)
    assert registry.decoder("order.created", target=OrderCreatedV2).versions == (1,)


def test_failing_upcaster_is_a_decode_error() -> None:
    def broken(message: OrderCreated) -> OrderCreatedV2:
        raise ValueError(f"cannot split {message.sku!r}")

    registry = MessageRegistry()
    registry.add_upcaster(OrderCreated, OrderCreatedV2, broken)
    body = registry.encode(OrderCreated(order_id="o", sku="s", qty=1))
    with pytest.raises(
        DecodeError,
        match=r"cannot decode OrderCreatedV2 \(order.created.v2 v2\): upcaster "
        r".*broken from OrderCreated \(order.created v1\) failed: ValueError: cannot split 's'",
    ) as info:
        registry.decoder("order.created", target=OrderCreatedV2).decode(body)
    assert isinstance(info.value.__cause__, ValueError)


def test_upcaster_returning_the_wrong_type_is_a_decode_error() -> None:
    registry = MessageRegistry()
    registry.add_upcaster(OrderCreated, OrderCreatedV2, lambda message: message)
    body = registry.encode(OrderCreated(order_id="o", sku="s", qty=1))
    with pytest.raises(DecodeError, match=r"returned OrderCreated, expected OrderCreatedV2"):
        registry.decoder("order.created", target=OrderCreatedV2).decode(body)


# ---------------------------------------------------------------------------- property


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), version=st.none() | st.integers(-2, 4))
def test_arbitrary_bytes_only_raise_message_errors(body: bytes, version: int | None) -> None:
    registry = MessageRegistry(JsonCodec(max_size=200))
    registry.register(ParcelShipped, ParcelShippedV2, ParcelShippedV3)
    registry.add_upcaster(ParcelShipped, ParcelShippedV2, parcel_v1_to_v2)
    registry.add_upcaster(ParcelShippedV2, ParcelShippedV3, parcel_v2_to_v3)
    with contextlib.suppress(DecodeError, MessageTooLargeError, UnsupportedVersionError):
        registry.decoder("parcel.shipped").decode(body, version)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "parcelId": st.text(max_size=3) | st.integers(),
            "carrier": st.text(max_size=3) | st.none(),
            "trackingUrl": st.text(max_size=3) | st.booleans(),
            "schemaVersion": st.integers(-1, 5) | st.text(max_size=1),
            "eventId": st.uuids().map(str) | st.text(max_size=3),
        },
    )
)
def test_arbitrary_payload_objects_decode_or_raise_message_errors(
    fields: dict[str, object],
) -> None:
    registry = MessageRegistry()
    registry.add_upcaster(ParcelShipped, ParcelShippedV2, parcel_v1_to_v2)
    registry.add_upcaster(ParcelShippedV2, ParcelShippedV3, parcel_v2_to_v3)
    try:
        message = registry.decoder("parcel.shipped").decode(_body(**fields))
    except MessageError:
        return
    assert type(message) is ParcelShippedV3
    assert message.parcel_id == fields["parcelId"]
