"""Thousands of hostile deliveries at a consumer: each is dead-lettered with its reason, the
consumer never crashes, and every valid message interleaved with them is processed once.

Runs on the memory broker and on a real RabbitMQ.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorbus import App, Event, HandlerContext, Service
from actorbus.brokers import DEFAULT_EXCHANGE, XH_REASON, Delivery, OutboundMessage
from actorbus.messages import Envelope, JsonCodec

pytestmark = pytest.mark.anyio

MAX_SIZE = 4096
TYPE = "hostile.order.placed"


class OrderPlaced(Event, routing_key=TYPE, version=1):
    order_id: str
    qty: int


REASONS = {
    "decode-error",
    "unknown-type",
    "unsupported-version",
    "too-large",
    "unsupported-content-type",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Neither a string nor an integer: wrong for every field of the payload.
wrong_typed = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.lists(json_values, max_size=3)
    | st.dictionaries(st.text(max_size=8), json_values, max_size=3)
)
not_an_object = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.lists(json_values, max_size=4)
)


FIELDS = ["orderId", "qty", "eventId", "occurredAt", "schemaVersion"]


def _bad_field_payload(field: str, value: Any) -> bytes:
    good = {
        "eventId": str(uuid.uuid4()),
        "occurredAt": "2024-05-01T12:00:00Z",
        "orderId": "o",
        "qty": 1,
        "schemaVersion": 1,
    }
    good[field] = value
    return msgspec.json.encode(good)


# Each hostile case: (body, type, content_type, headers)
hostile = st.one_of(
    st.builds(lambda b: (b, TYPE, "application/json", {}), st.binary(max_size=64)),
    st.builds(
        lambda v: (msgspec.json.encode(v), TYPE, "application/json", {}),
        not_an_object,
    ),
    st.builds(
        lambda f, v: (_bad_field_payload(f, v), TYPE, "application/json", {}),
        st.sampled_from(FIELDS),
        wrong_typed,
    ),
    st.builds(
        lambda name: (b'{"orderId": "o", "qty": 1}', f"x.{name}", "application/json", {}),
        st.from_regex(r"[a-z]{1,12}", fullmatch=True),
    ),
    st.builds(
        lambda ct: (b'{"orderId": "o", "qty": 1}', TYPE, ct, {}),
        st.sampled_from(["text/plain", "application/xml", "image/png", "application/x-pickle"]),
    ),
    st.builds(
        lambda n: (b'{"orderId": "' + b"x" * n + b'", "qty": 1}', TYPE, "application/json", {}),
        st.integers(min_value=MAX_SIZE, max_value=MAX_SIZE * 4),
    ),
    st.builds(
        lambda v: (b'{"orderId": "o", "qty": 1}', TYPE, "application/json",
                   {"x-schema-version": v}),
        st.one_of(
            st.integers(min_value=2, max_value=10**6),
            # "1" or "01" would name the supported version: not hostile
            st.text(max_size=10).filter(lambda v: not v.strip().isdigit()),
        ),
    ),
)  # fmt: skip


def _raw(queue: str, body: bytes, type_: str, content_type: str, headers: Any) -> OutboundMessage:
    envelope = Envelope(str(uuid.uuid4()), type_, queue, content_type=content_type, headers=headers)
    return OutboundMessage(DEFAULT_EXCHANGE, envelope, body)


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.amqp)])
def broker(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("amqp_url")
    return url


async def test_hostile_deliveries_are_dead_lettered_and_valid_ones_processed(
    broker: str, tmp_path: Any
) -> None:
    examples = 8 if broker == "memory://" else 3

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(cases=st.lists(hostile, min_size=150, max_size=300))
    def run(cases: list[tuple[bytes, str, str, Any]]) -> None:
        anyio.run(_exercise, broker, tmp_path, cases, backend="asyncio")

    await anyio.to_thread.run_sync(run)


async def _exercise(broker: str, tmp_path: Any, cases: list[tuple[bytes, str, str, Any]]) -> None:
    ns = uuid.uuid4().hex[:8]
    handled: list[str] = []
    all_done = anyio.Event()
    svc = Service(f"hostile-{ns}", exchange=f"hostile.{ns}")
    valid = [OrderPlaced(order_id=f"ok-{i}", qty=i + 1) for i in range(len(cases) // 3)]

    @svc.on(OrderPlaced)
    async def place(event: OrderPlaced, ctx: HandlerContext) -> None:
        handled.append(event.order_id)
        if len(handled) == len(valid):
            all_done.set()

    app = App([svc], broker=broker, data_dir=tmp_path, codec=JsonCodec(max_size=MAX_SIZE))
    queue = svc.queue.name
    async with app:
        batch: list[OutboundMessage] = []
        valid_iter = iter(valid)
        for i, case in enumerate(cases):
            batch.append(_raw(queue, *case))
            if i % 3 == 0 and (event := next(valid_iter, None)) is not None:
                env = Envelope(str(event.event_id), TYPE, queue)
                batch.append(OutboundMessage(DEFAULT_EXCHANGE, env, msgspec.json.encode(event)))
        for event in valid_iter:
            env = Envelope(str(event.event_id), TYPE, queue)
            batch.append(OutboundMessage(DEFAULT_EXCHANGE, env, msgspec.json.encode(event)))
        dead: list[Delivery] = []
        all_dead = anyio.Event()

        def on_dead(delivery: Delivery) -> None:
            dead.append(delivery)
            if len(dead) == len(cases):
                all_dead.set()

        watcher = await app.broker.consume(
            svc.queue.dlq_name, on_dead, prefetch=len(cases) + len(valid)
        )
        await app.broker.publish_batch(batch)
        with anyio.fail_after(60):
            await all_done.wait()
            await all_dead.wait()
        await watcher.cancel()
        reasons = [d.envelope.headers[XH_REASON] for d in dead]
        for delivery in dead:
            await delivery.ack()
        assert app.is_ready  # the consumer never crashed
    assert sorted(handled) == sorted(e.order_id for e in valid)
    assert set(reasons) <= REASONS, set(reasons) - REASONS
