"""W3C trace context: parsing, propagation through messages, HTTP and the outbox; OTel spans."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog

from actorbus import App, Event, HandlerContext, Service
from actorbus.app import (
    TraceContext,
    continue_trace,
    current_trace,
    parse_traceparent,
    trace_headers,
)
from actorbus.app._outgoing import Outgoing
from actorbus.brokers.memory import MemoryBroker
from actorbus.messages import JsonCodec
from actorbus.observe import Tracer, consumer_context
from actorbus.testing import Published, RecordingBroker, ServiceHarness, capture_logs
from services import services

pytestmark = pytest.mark.anyio

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


class Started(Event, routing_key="trace.started", version=1):
    n: int


class Continued(Event, routing_key="trace.continued", version=1):
    n: int


class Finished(Event, routing_key="trace.finished", version=1):
    n: int


def _parts(published: Published) -> tuple[str, str]:
    value = published.envelope.headers["traceparent"]
    parsed = parse_traceparent(value)
    assert parsed is not None, value
    assert value == parsed.traceparent
    return parsed.trace_id, parsed.span_id


# ---------------------------------------------------------------------------- parsing


def test_a_valid_traceparent_is_parsed() -> None:
    context = parse_traceparent(TRACEPARENT, "vendor=abc,other=1")
    assert context == TraceContext(TRACE, PARENT, "01", "vendor=abc,other=1")
    assert context.sampled
    assert context.headers() == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"}


def test_bytes_from_a_broker_are_accepted() -> None:
    context = parse_traceparent(TRACEPARENT.encode())
    assert context is not None
    assert context.trace_id == TRACE


def test_a_later_version_with_more_fields_is_read_as_version_00() -> None:
    context = parse_traceparent(f"cc-{TRACE}-{PARENT}-00-what-the-future-brings")
    assert context is not None
    assert context.traceparent == f"00-{TRACE}-{PARENT}-00"
    assert not context.sampled


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        None,
        42,
        f"00-{TRACE}-{PARENT}",  # no flags
        f"00-{TRACE.upper()}-{PARENT}-01",  # upper case
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}g-{PARENT}-01",  # not hex
        f"00_{TRACE}_{PARENT}_01",
        b"\xff" * 55,
    ],
)
def test_a_malformed_traceparent_is_ignored(value: object) -> None:
    assert parse_traceparent(value) is None
    # A delivery carrying it is handled in a new trace of its own.
    context = consumer_context({"traceparent": value})
    assert context.trace_id != TRACE
    assert parse_traceparent(context.traceparent) == context


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": TRACEPARENT}, TraceContext(TRACE, PARENT)),
        ({"traceparent": TRACEPARENT.encode()}, TraceContext(TRACE, PARENT)),  # AMQP bytes
        (
            {"traceparent": TRACEPARENT, "tracestate": "vendor=1"},
            TraceContext(TRACE, PARENT, "01", "vendor=1"),
        ),
        ({"traceparent": f"cc-{TRACE}-{PARENT}-00-later"}, TraceContext(TRACE, PARENT, "00")),
    ],
)
def test_a_delivery_continues_the_trace_its_message_carries(
    headers: dict[str, object], expected: TraceContext
) -> None:
    assert consumer_context(headers) == expected


def test_an_oversized_or_unprintable_tracestate_is_dropped() -> None:
    assert parse_traceparent(TRACEPARENT, "a=" + "x" * 600).tracestate is None  # type: ignore[union-attr]
    assert parse_traceparent(TRACEPARENT, "a=1\r\nx: y").tracestate is None  # type: ignore[union-attr]


def test_new_contexts_have_random_valid_ids() -> None:
    first, second = TraceContext.new(), TraceContext.new()
    assert first.trace_id != second.trace_id
    assert parse_traceparent(first.traceparent) == first
    child = first.child()
    assert child.trace_id == first.trace_id
    assert child.span_id != first.span_id


# ----------------------------------------------------------------- outbound messages


def test_outgoing_continues_the_current_trace_with_a_new_span_per_message() -> None:
    outgoing = Outgoing(JsonCodec(), "events", "commands", tracer=Tracer())
    with continue_trace({"traceparent": TRACEPARENT, "tracestate": "v=1"}):
        assert trace_headers() == {"traceparent": TRACEPARENT, "tracestate": "v=1"}
        first = outgoing.build(Started(n=1))
        second = outgoing.build(Started(n=2))
    assert current_trace() is None
    assert trace_headers() == {}
    ids = []
    for message in (first, second):
        context = parse_traceparent(message.envelope.headers["traceparent"])
        assert context is not None
        assert context.trace_id == TRACE
        assert message.envelope.headers["tracestate"] == "v=1"
        assert message.envelope.headers["x-schema-version"] == 1
        ids.append(context.span_id)
    assert len({*ids, PARENT}) == 3


def test_outside_a_trace_each_message_starts_one() -> None:
    outgoing = Outgoing(JsonCodec(), "events", "commands", tracer=Tracer())
    with continue_trace({"traceparent": "not a traceparent"}) as context:
        assert context is None
        first = outgoing.build(Started(n=1))
    second = outgoing.build(Started(n=2))
    one = parse_traceparent(first.envelope.headers["traceparent"])
    two = parse_traceparent(second.envelope.headers["traceparent"])
    assert one is not None
    assert two is not None
    assert one.trace_id != two.trace_id


def test_an_explicit_traceparent_header_is_kept_and_no_tracer_adds_none() -> None:
    traced = Outgoing(JsonCodec(), "events", "commands", tracer=Tracer())
    message = traced.build(Started(n=1), headers={"traceparent": TRACEPARENT})
    assert message.envelope.headers["traceparent"] == TRACEPARENT
    untraced = Outgoing(JsonCodec(), "events", "commands")
    with continue_trace({"traceparent": TRACEPARENT}):
        assert "traceparent" not in untraced.build(Started(n=1)).envelope.headers


# --------------------------------------------------------------------- the pipeline


def _chain(seen: list[dict[str, Any]]) -> list[Service]:
    first = Service("first", queue="trace-first.queue")
    second = Service("second", queue="trace-second.queue")

    @first.on(Started)
    async def on_started(event: Started, ctx: HandlerContext) -> None:
        seen.append(
            {
                "trace": current_trace(),
                "logvars": structlog.contextvars.get_contextvars(),
                "trace_id": ctx.trace_id,
            }
        )
        ctx.log.info("started_handled")
        ctx.publish(Continued(n=event.n))

    @second.on(Continued)
    async def on_continued(event: Continued, ctx: HandlerContext) -> None:
        seen.append({"logvars": structlog.contextvars.get_contextvars()})
        ctx.publish(Finished(n=event.n))

    return [first, second]


async def test_a_trace_goes_on_through_every_hop_with_a_new_span_id() -> None:
    seen: list[dict[str, Any]] = []
    with capture_logs() as logs:
        async with ServiceHarness(_chain(seen)) as bus:
            with continue_trace({"traceparent": TRACEPARENT}):
                await bus.publish(Started(n=1), correlation_id="flow-1")
            await bus.wait_for(Finished)
            await bus.wait_until_idle()
    [started] = bus.published_to("trace.started")
    [continued] = bus.published_to("trace.continued")
    [finished] = bus.published_to("trace.finished")
    hops = [_parts(p) for p in (started, continued, finished)]
    assert {trace for trace, _ in hops} == {TRACE}
    entry, second = seen
    handling: TraceContext = entry["trace"]
    # Without OpenTelemetry no span is recorded: a delivery's context is its message's.
    assert (handling.trace_id, handling.span_id) == hops[0]
    spans = [PARENT, *(span for _, span in hops)]
    assert len(set(spans)) == len(spans), spans
    # The handler ran with its delivery's ids bound for every log line, and the trace id.
    logvars = entry["logvars"]
    assert logvars["trace_id"] == TRACE
    assert logvars["correlation_id"] == "flow-1"
    assert "causation_id" not in logvars  # none: the first message of the flow
    assert second["logvars"] == {
        "trace_id": TRACE,
        "correlation_id": "flow-1",
        "causation_id": started.envelope.message_id,
    }
    assert entry["trace_id"] == TRACE
    [line] = [e for e in logs if e["event"] == "started_handled"]
    assert line["trace_id"] == TRACE
    assert line["span_id"] == handling.span_id
    assert line["correlation_id"] == "flow-1"
    # Outside a delivery nothing stays bound.
    assert "trace_id" not in structlog.contextvars.get_contextvars()


async def test_a_delivery_without_trace_context_starts_a_trace_that_goes_on() -> None:
    seen: list[dict[str, Any]] = []
    async with ServiceHarness(_chain(seen)) as bus:
        # A foreign producer: no traceparent at all.
        service = bus.app.services[0]
        await bus.recorder.inner.publish(
            Outgoing(JsonCodec(), service.exchange, service.command_exchange).build(Started(n=1))
        )
        await bus.wait_for(Finished)
    [continued] = bus.published_to("trace.continued")
    [finished] = bus.published_to("trace.finished")
    trace = seen[0]["trace"].trace_id
    assert _parts(continued)[0] == trace
    assert _parts(finished)[0] == trace


async def test_tracing_off_carries_no_headers(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    recorder = RecordingBroker(MemoryBroker(f"memory://{uuid.uuid4().hex}"))
    async with App(_chain(seen), broker=recorder, data_dir=tmp_path, tracing=False) as app:
        with continue_trace({"traceparent": TRACEPARENT}):
            await app.publish(Started(n=1))
        with anyio.fail_after(5):
            while not any(p.envelope.type == "trace.finished" for p in recorder.published):
                await recorder.changed()
    assert seen[0]["trace"] is None
    assert seen[0]["trace_id"] is None
    assert all("traceparent" not in p.envelope.headers for p in recorder.published)


# ------------------------------------------------- HTTP → outbox → events (reference)


async def _reference(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingBroker]]:
    recorder = RecordingBroker(MemoryBroker(f"memory://{uuid.uuid4().hex}"))
    store = f"sqlite:///{(tmp_path / 'store.sqlite3').as_posix()}"  # the services are durable
    async with App(
        services("choreography"), broker=recorder, data_dir=tmp_path, store=store
    ) as app:
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, recorder


async def _wait_for(recorder: RecordingBroker, order_id: str, *types: str) -> list[Published]:
    with anyio.fail_after(10):
        while True:
            found = [
                p
                for p in recorder.published
                if p.envelope.type in types and p.envelope.correlation_id == order_id
            ]
            if {p.envelope.type for p in found} == set(types):
                return found
            await recorder.changed()


async def test_one_trace_from_post_orders_through_the_event_chain(tmp_path: Path) -> None:
    async for client, recorder in _reference(tmp_path):
        response = await client.post(
            "/orders",
            json={"sku": "ABC", "qty": 1, "customerId": "alice"},
            headers={"traceparent": TRACEPARENT, "tracestate": "shop=1"},
        )
        assert response.status_code == 202, response.text
        order_id = response.json()["orderId"]
        found = await _wait_for(
            recorder, order_id, "order.created", "order.created.v2", "stock.reserved"
        )
    hops = [_parts(p) for p in found]
    assert {trace for trace, _ in hops} == {TRACE}, hops
    spans = [PARENT, *(span for _, span in hops)]
    assert len(set(spans)) == len(spans), spans
    assert {p.envelope.headers.get("tracestate") for p in found} == {"shop=1"}


async def test_a_post_without_or_with_a_malformed_traceparent_starts_a_trace(
    tmp_path: Path,
) -> None:
    async for client, recorder in _reference(tmp_path):
        traces = []
        for headers in ({}, {"traceparent": "00-xyz-abc-01"}, {"traceparent": "\x00" * 60}):
            response = await client.post("/orders", json={"sku": "ABC", "qty": 1}, headers=headers)
            assert response.status_code == 202, response.text
            order_id = response.json()["orderId"]
            found = await _wait_for(recorder, order_id, "order.created.v2", "stock.reserved")
            [trace] = {_parts(p)[0] for p in found}
            traces.append(trace)
    assert len(set(traces)) == 3


# ------------------------------------------------------------------- OpenTelemetry


async def test_opentelemetry_spans_form_one_trace(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[dict[str, Any]] = []
    recorder = RecordingBroker(MemoryBroker(f"memory://{uuid.uuid4().hex}"))
    app = App(_chain(seen), broker=recorder, data_dir=tmp_path, tracing=provider)
    endpoint_span: list[TraceContext | None] = []

    async def start(request: Any, ctx: Any) -> Any:
        from starlette.responses import JSONResponse

        endpoint_span.append(current_trace())
        await ctx.publish(Started(n=7))
        return JSONResponse({"ok": True}, status_code=202)

    app.services[0].route("/start", methods=["POST"])(start)
    async with app:
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post("/start", headers={"traceparent": TRACEPARENT})
            assert response.status_code == 202
            with anyio.fail_after(5):
                while not any(p.envelope.type == "trace.finished" for p in recorder.published):
                    await recorder.changed()
            await client.get("/healthz")  # probes are not traced
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {int(TRACE, 16)}
    by_kind: dict[SpanKind, list[Any]] = {}
    for span in spans:
        by_kind.setdefault(span.kind, []).append(span)
    [server] = by_kind[SpanKind.SERVER]
    assert server.name == "POST /start"
    assert server.parent.span_id == int(PARENT, 16)
    assert server.attributes["http.response.status_code"] == 202
    assert endpoint_span[0] is not None
    assert endpoint_span[0].span_id == f"{server.context.span_id:016x}"
    producers = {s.attributes["actorbus.message.type"]: s for s in by_kind[SpanKind.PRODUCER]}
    consumers = {s.attributes["actorbus.message.type"]: s for s in by_kind[SpanKind.CONSUMER]}
    assert set(producers) == {"trace.started", "trace.continued", "trace.finished"}
    assert set(consumers) == {"trace.started", "trace.continued"}
    assert producers["trace.started"].parent.span_id == server.context.span_id
    for key in ("trace.started", "trace.continued"):
        assert consumers[key].parent.span_id == producers[key].context.span_id
    assert producers["trace.continued"].parent.span_id == consumers["trace.started"].context.span_id
    # The headers carry the producer spans' ids.
    for published in recorder.published:
        producer = producers[published.envelope.type]
        assert _parts(published) == (TRACE, f"{producer.context.span_id:016x}")
    provider.shutdown()


async def test_opentelemetry_records_a_failed_delivery(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from actorbus import RejectMessage

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = Service("rejecting", queue="trace-rejecting.queue")

    @service.on(Started)
    async def reject(event: Started, ctx: HandlerContext) -> None:
        raise RejectMessage("no thanks")

    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([service], broker=broker, data_dir=tmp_path, tracing=provider) as app:
        await app.publish(Started(n=1))
        with anyio.fail_after(5):
            while not any(s.kind == SpanKind.CONSUMER for s in exporter.get_finished_spans()):
                await anyio.wait_all_tasks_blocked()
    [consumer] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert consumer.status.status_code == StatusCode.ERROR
    assert "no thanks" in (consumer.status.description or "")
    provider.shutdown()
