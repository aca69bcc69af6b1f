"""JsonCodec: round trips, tolerant reading, precise decode errors, the size limit."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorbus.exceptions import ConfigurationError, DecodeError, MessageTooLargeError
from actorbus.messages import DEFAULT_MAX_SIZE, Codec, JsonCodec, schema_of

from ._types import LineItem, OrderCreated, OrderCreatedV2, StockRejected

EVENT_ID = "4d6a9c3e-2b1f-4e8a-9c7d-5f3e2a1b0c9d"
OCCURRED_AT = "2024-05-01T12:30:00Z"
# The envelope every producer sends, for payloads whose point is another field.
ENVELOPE = {"eventId": EVENT_ID, "occurredAt": OCCURRED_AT}
V1_PAYLOAD = (
    b'{"eventId":"4d6a9c3e-2b1f-4e8a-9c7d-5f3e2a1b0c9d","orderId":"o-1","sku":"apple",'
    b'"qty":3,"occurredAt":"2024-05-01T12:30:00Z","schemaVersion":1}'
)


@pytest.fixture
def codec() -> JsonCodec:
    codec = JsonCodec()
    codec.prepare(OrderCreated, OrderCreatedV2, StockRejected)
    return codec


def test_json_codec_satisfies_the_codec_protocol(codec: JsonCodec) -> None:
    as_protocol: Codec = codec
    assert as_protocol.content_type == "application/json"
    assert as_protocol.max_size == DEFAULT_MAX_SIZE == 1024 * 1024


def test_encode_uses_camel_case_rfc3339_utc_and_uuid(codec: JsonCodec) -> None:
    message = OrderCreated(
        event_id=uuid.UUID(EVENT_ID),
        occurred_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        order_id="o-1",
        sku="apple",
        qty=3,
    )
    assert json.loads(codec.encode(message)) == {
        "eventId": EVENT_ID,
        "orderId": "o-1",
        "sku": "apple",
        "qty": 3,
        "occurredAt": "2024-05-01T12:30:00Z",
        "schemaVersion": 1,
    }


def test_round_trip(codec: JsonCodec) -> None:
    message = OrderCreatedV2(order_id="o-2", customer_id="c-1", items=[LineItem("a", 1)])
    decoded = codec.decode(codec.encode(message), OrderCreatedV2)
    assert decoded == message
    assert decoded.occurred_at.tzinfo is not None


def test_decode_contract_payload(codec: JsonCodec) -> None:
    message = codec.decode(V1_PAYLOAD, OrderCreated)
    assert message.event_id == uuid.UUID(EVENT_ID)
    assert message.occurred_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert (message.order_id, message.sku, message.qty, message.schema_version) == (
        "o-1",
        "apple",
        3,
        1,
    )


def test_decode_keeps_a_non_utc_offset(codec: JsonCodec) -> None:
    body = V1_PAYLOAD.replace(b"12:30:00Z", b"14:30:00+02:00")
    message = codec.decode(body, OrderCreated)
    assert message.occurred_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert message.occurred_at.utcoffset() == timedelta(hours=2)
    assert message.occurred_at.tzinfo == timezone(timedelta(hours=2))


def test_unknown_fields_are_ignored(codec: JsonCodec) -> None:
    body = V1_PAYLOAD[:-1] + b',"newField":{"nested":[1,2,3]},"customerId":"c-9"}'
    message = codec.decode(body, OrderCreated)
    assert message.qty == 3
    assert not hasattr(message, "new_field")


def test_missing_optional_fields_get_defaults(codec: JsonCodec) -> None:
    body = json.dumps({**ENVELOPE, "orderId": "o", "reason": "out of stock"}).encode()
    message = codec.decode(body, StockRejected)
    assert message.retryable is False
    assert message.schema_version == 1
    # The envelope is the payload's, never made up.
    assert message.event_id == uuid.UUID(EVENT_ID)
    assert message.occurred_at == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "what"),
    [("eventId", "a message's identity is never invented"), ("occurredAt", "never invented")],
)
def test_missing_envelope_field_is_never_invented(codec: JsonCodec, field: str, what: str) -> None:
    payload = {**ENVELOPE, "orderId": "o", "reason": "out of stock"}
    del payload[field]
    with pytest.raises(
        DecodeError,
        match=rf"cannot decode StockRejected \(stock.rejected v1\): `\$.{field}` is missing: "
        rf".*{what}.*\(Object missing required field `{field}`\); payload starts",
    ) as info:
        codec.decode(json.dumps(payload).encode(), StockRejected)
    assert info.value.path == f"$.{field}"
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


def test_constructing_still_fills_the_envelope() -> None:
    # Only decoding requires them; code that builds a message gets a new id and now.
    before = datetime.now(UTC)
    message = StockRejected(order_id="o", reason="r")
    assert message.event_id.version == 4
    assert before <= message.occurred_at <= datetime.now(UTC)
    assert StockRejected(order_id="o", reason="r").event_id != message.event_id


def test_missing_required_field(codec: JsonCodec) -> None:
    with pytest.raises(
        DecodeError,
        match=r"cannot decode OrderCreated \(order.created v1\): "
        r"Object missing required field `qty`; payload starts b'\{",
    ) as info:
        codec.decode(json.dumps({**ENVELOPE, "orderId": "o", "sku": "s"}).encode(), OrderCreated)
    assert info.value.routing_key == "order.created"
    assert info.value.version == 1
    assert info.value.path == "$"
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


def test_wrong_type(codec: JsonCodec) -> None:
    with pytest.raises(
        DecodeError,
        match=r"cannot decode OrderCreated \(order.created v1\): "
        r"Expected `int`, got `str` - at `\$.qty`; payload starts",
    ) as info:
        codec.decode(b'{"orderId":"o","sku":"s","qty":"3"}', OrderCreated)
    assert info.value.path == "$.qty"


def test_wrong_type_in_nested_list(codec: JsonCodec) -> None:
    body = b'{"orderId":"o","customerId":"c","items":[{"sku":"a","qty":1},{"sku":"b"}]}'
    with pytest.raises(
        DecodeError, match=r"Object missing required field `qty` - at `\$.items\[1\]`"
    ) as info:
        codec.decode(body, OrderCreatedV2)
    assert info.value.path == "$.items[1]"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("eventId", '"not-a-uuid"', r"Invalid UUID - at `\$.eventId`"),
        ("occurredAt", '"yesterday"', r"Invalid RFC3339 encoded datetime - at `\$.occurredAt`"),
        (
            "occurredAt",
            '"2024-05-01T12:30:00"',
            r"Expected `datetime` with a timezone component - at `\$.occurredAt`",
        ),
        ("schemaVersion", '"1"', r"Expected `int`, got `str` - at `\$.schemaVersion`"),
        ("schemaVersion", "true", r"Expected `int`, got `bool` - at `\$.schemaVersion`"),
        ("schemaVersion", "2", r"Invalid enum value 2 - at `\$.schemaVersion`"),
        ("schemaVersion", "0", r"Invalid enum value 0 - at `\$.schemaVersion`"),
    ],
)
def test_wrong_envelope_fields(codec: JsonCodec, field: str, value: str, expected: str) -> None:
    body = json.dumps({"orderId": "o", "sku": "s", "qty": 1}).encode()
    body = body[:-1] + f', "{field}": {value}}}'.encode()
    with pytest.raises(DecodeError, match=expected):
        codec.decode(body, OrderCreated)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"orderId": "o",', r"malformed JSON: Input data was truncated"),
        (b"{'orderId': 'o'}", r"malformed JSON: JSON is malformed: .*\(byte 1\)"),
        (b"", r"malformed JSON: Input data was truncated"),
        (V1_PAYLOAD + b" x", r"malformed JSON: JSON is malformed: trailing"),
        (b"\xff\xfe", r"malformed JSON"),
    ],
)
def test_malformed_json(codec: JsonCodec, body: bytes, expected: str) -> None:
    with pytest.raises(DecodeError, match=r"cannot decode OrderCreated .*: " + expected) as info:
        codec.decode(body, OrderCreated)
    assert info.value.path is None


@pytest.mark.parametrize(
    ("body", "got"), [(b"[1, 2]", "array"), (b"42", "int"), (b'"x"', "str"), (b"null", "null")]
)
def test_non_object_json(codec: JsonCodec, body: bytes, got: str) -> None:
    with pytest.raises(DecodeError, match=rf"Expected `object`, got `{got}`; payload starts"):
        codec.decode(body, OrderCreated)


def test_deeply_nested_json_is_a_decode_error(codec: JsonCodec) -> None:
    body = b'{"orderId":"o","extra":' + b"[" * 100_000
    with pytest.raises(DecodeError, match=r"JSON nested too deeply"):
        codec.decode(body, OrderCreated)


def test_payload_in_error_is_truncated(codec: JsonCodec) -> None:
    body = b'{"orderId":"' + b"x" * 500 + b'","sku":"s","qty":"1"}'
    with pytest.raises(DecodeError) as info:
        codec.decode(body, OrderCreated)
    text = str(info.value)
    assert text.endswith("…")
    assert len(text) < 300


def test_oversized_payload_is_rejected_before_decoding() -> None:
    codec = JsonCodec(max_size=100)
    body = b"{" + b" " * 200  # malformed too: the size check must come first
    with pytest.raises(
        MessageTooLargeError,
        match=r"message of 201 bytes exceeds the limit of 100 bytes "
        r"\(decoding OrderCreated \(order.created v1\)\)",
    ):
        codec.decode(body, OrderCreated)


def test_payload_at_the_limit_is_decoded() -> None:
    codec = JsonCodec(max_size=len(V1_PAYLOAD))
    assert codec.decode(V1_PAYLOAD, OrderCreated).qty == 3


@pytest.mark.parametrize("max_size", [0, -5, 1.5, "1", True])
def test_invalid_max_size(max_size: object) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid max_size"):
        JsonCodec(max_size=max_size)  # type: ignore[arg-type]


def test_unprepared_type_is_prepared_once(codec: JsonCodec) -> None:
    class Fresh(msgspec.Struct):
        a: int

    first = codec.unchecked_decoder(Fresh)
    assert codec.unchecked_decoder(Fresh) is first
    assert codec.decode(b'{"a": 1}', Fresh) == Fresh(a=1)


def test_one_encoder_and_one_decoder_per_type_are_reused(codec: JsonCodec) -> None:
    decode = codec.unchecked_decoder(OrderCreated)
    codec.prepare(OrderCreated)
    assert codec.unchecked_decoder(OrderCreated) is decode
    assert codec.encode is codec.encode


def test_schema_of_message_type() -> None:
    schema = schema_of(OrderCreated)
    definition = schema["$defs"]["OrderCreated"]
    assert schema["$ref"] == "#/$defs/OrderCreated"
    assert definition["x-routing-key"] == "order.created"
    assert definition["x-schema-version"] == 1
    assert set(definition["properties"]) == {
        "eventId",
        "occurredAt",
        "schemaVersion",
        "orderId",
        "sku",
        "qty",
    }
    # eventId and occurredAt are required on the wire (constructing fills them).
    assert definition["required"] == ["eventId", "occurredAt", "orderId", "sku", "qty"]
    # Optional (a payload without it is this version), and only this version.
    assert definition["properties"]["schemaVersion"] == {"enum": [1], "default": 1}
    v2 = schema_of(OrderCreatedV2)["$defs"]["OrderCreatedV2"]["properties"]["schemaVersion"]
    assert v2 == {"enum": [2], "default": 2}


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_errors(body: bytes) -> None:
    codec = JsonCodec(max_size=200)
    with contextlib.suppress(DecodeError, MessageTooLargeError):
        codec.decode(body, OrderCreatedV2)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["eventId", "occurredAt", "schemaVersion", "orderId", "customerId", "items", "x"]
        ),
        _json_values,
    )
)
def test_arbitrary_json_objects_only_raise_decode_errors(fields: dict[str, object]) -> None:
    codec = JsonCodec()
    error: DecodeError | None = None
    try:
        codec.decode(json.dumps(fields).encode(), OrderCreatedV2)
    except DecodeError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("cannot decode OrderCreatedV2 (order.created.v2 v2): ")
