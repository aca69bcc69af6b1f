"""Prometheus metrics of an App: counters after a flow, gauges, /metrics and the metrics port."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from actorbus import App, Command, Event, HandlerContext, RejectMessage, RetryPolicy, Service
from actorbus.app import MemoryInbox
from actorbus.brokers import OutboundMessage
from actorbus.brokers.memory import MemoryBroker
from actorbus.exceptions import ConfigurationError, ExchangeNotFoundError, RequestTimeoutError
from actorbus.messages import Envelope
from actorbus.runtime import Backoff
from actorbus.testing import wait_until_idle
from tests.unit.app._request_cases import (
    EXCHANGE,
    NeverAnswered,
    ReserveStock,
    StockReserved,
    stock_service,
)

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(
    max_attempts=2, backoff=Backoff(initial=0.001, factor=1.0, maximum=0.001, jitter=0)
)
SERVICE = "metered"
QUEUE = "metered.queue"


class Nowhere(Command, routing_key="metrics.nowhere", version=1):
    pass


class Job(Event, routing_key="metrics.job", version=1):
    kind: str


class Done(Event, routing_key="metrics.done", version=1):
    kind: str


class Probe:
    """Counts handler calls and lets a test wait for a number of them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._changed = anyio.Event()

    def add(self, item: str) -> None:
        self.calls.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.calls) < count:
                await self._changed.wait()


def _service(probe: Probe, **options: Any) -> Service:
    service = Service(SERVICE, queue=QUEUE, retry=FAST, retry_delays=(0.001,), **options)

    @service.on(Job)
    async def handle(job: Job, ctx: HandlerContext) -> None:
        probe.add(f"{job.kind}:{ctx.attempt}")
        if job.kind == "flaky" and ctx.attempt == 1:
            raise RuntimeError("first time fails")
        if job.kind == "broken":
            raise RuntimeError("always fails")
        if job.kind == "poison":
            raise RejectMessage("cannot be handled")
        ctx.publish(Done(kind=job.kind))

    return service


def value(app: App, name: str, **labels: str) -> float | None:
    assert app.metrics is not None
    return app.metrics.registry.get_sample_value(name, labels)


async def test_counters_after_a_flow(tmp_path: Path) -> None:
    probe = Probe()
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([_service(probe)], broker=broker, data_dir=tmp_path) as app:
        for kind in ("ok", "ok", "flaky", "broken", "poison"):
            await app.publish(Job(kind=kind))
        # handled: ok 2 times, flaky 2 (retried once), broken 2 (max_attempts), poison once
        await probe.wait_for(7)
        # A type nobody handles, from a foreign producer.
        stray = Envelope(str(uuid.uuid4()), "metrics.stray", "metrics.job")
        await broker.publish(OutboundMessage(app.services[0].exchange, stray, b"{}"))
        await wait_until_idle(broker)

        labels = {"service": SERVICE, "queue": QUEUE, "type": "metrics.job"}
        assert value(app, "actorbus_messages_consumed_total", **labels) == 7
        assert value(app, "actorbus_messages_acked_total", **labels) == 3
        assert value(app, "actorbus_messages_retried_total", **labels) == 2
        assert (
            value(app, "actorbus_messages_dead_lettered_total", reason="handler-error", **labels)
            == 1
        )
        assert value(app, "actorbus_messages_dead_lettered_total", reason="rejected", **labels) == 1
        assert value(app, "actorbus_handler_duration_seconds_count", **labels) == 7
        assert value(app, "actorbus_handler_duration_seconds_bucket", le="+Inf", **labels) == 7
        handler_sum = value(app, "actorbus_handler_duration_seconds_sum", **labels)
        assert handler_sum is not None
        assert handler_sum > 0
        unknown = {"service": SERVICE, "queue": QUEUE, "type": "(unknown)"}
        assert value(app, "actorbus_messages_consumed_total", **unknown) == 1
        assert (
            value(app, "actorbus_messages_dead_lettered_total", reason="unknown-type", **unknown)
            == 1
        )
        # Publishes: five jobs by the App itself, three Done by the service's handler.
        assert value(app, "actorbus_messages_published_total", service="", type="metrics.job") == 5
        assert (
            value(app, "actorbus_messages_published_total", service=SERVICE, type="metrics.done")
            == 3
        )
        assert value(app, "actorbus_publish_confirm_seconds_count", service="") == 5
        assert value(app, "actorbus_publish_confirm_seconds_count", service=SERVICE) == 3
        assert value(app, "actorbus_broker_ready", broker=broker.url) == 1
        assert value(app, "actorbus_app_ready") == 1
    assert value(app, "actorbus_broker_ready", broker=broker.url) == 0
    assert value(app, "actorbus_app_ready") == 0


async def test_a_refused_publish_is_counted_as_a_failure(tmp_path: Path) -> None:
    probe = Probe()
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([_service(probe)], broker=broker, data_dir=tmp_path) as app:
        ctx = app.contexts[SERVICE]
        with pytest.raises(ExchangeNotFoundError):  # no service takes commands here
            await ctx.send(Nowhere())
        failures = {"service": SERVICE, "error": "ExchangeNotFoundError"}
        assert value(app, "actorbus_publish_failures_total", **failures) == 1
        assert (
            value(app, "actorbus_messages_published_total", service=SERVICE, type="metrics.nowhere")
            is None
        )


async def test_mailbox_depth_is_read_at_scrape_time(tmp_path: Path) -> None:
    release = anyio.Event()
    started = anyio.Event()
    service = Service(SERVICE, queue=QUEUE, prefetch=16)

    @service.on(Job)
    async def slow(job: Job, ctx: HandlerContext) -> None:
        started.set()
        await release.wait()

    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([service], broker=broker, data_dir=tmp_path) as app:
        for _ in range(5):
            await app.publish(Job(kind="slow"))
        with anyio.fail_after(5):
            await started.wait()
        await anyio.wait_all_tasks_blocked()
        actor = f"{SERVICE}.consumer-0"
        labels = {"service": SERVICE, "queue": QUEUE, "actor": actor}
        assert value(app, "actorbus_mailbox_depth", **labels) == 4
        assert value(app, "actorbus_mailbox_capacity", **labels) == 16
        release.set()
        await wait_until_idle(broker)
        assert value(app, "actorbus_mailbox_depth", **labels) == 0
        assert value(app, "actorbus_actor_restarts_total", service=SERVICE, actor=actor) == 0


class _FailingOnce(MemoryInbox):
    """An inbox whose first lookup fails: the pipeline fails outside the handler."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def lookup(self, consumer: str, message_id: str) -> Sequence[OutboundMessage] | None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("inbox unavailable")
        return await super().lookup(consumer, message_id)


async def test_a_crashed_consumer_is_counted_as_restarted(tmp_path: Path) -> None:
    probe = Probe()
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    inbox = _FailingOnce()
    async with App([_service(probe)], broker=broker, data_dir=tmp_path, inbox=inbox) as app:
        await app.publish(Job(kind="ok"))
        await probe.wait_for(1)  # handled after the actor was restarted
        await wait_until_idle(broker)
        actor = f"{SERVICE}.consumer-0"
        assert inbox.failed
        assert value(app, "actorbus_actor_restarts_total", service=SERVICE, actor=actor) == 1
        labels = {"service": SERVICE, "queue": QUEUE, "type": "metrics.job"}
        assert value(app, "actorbus_messages_consumed_total", **labels) == 2  # incl. the crash
        assert value(app, "actorbus_messages_acked_total", **labels) == 1


async def test_metrics_endpoint_serves_the_apps_own_registry(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    stray = Counter(f"stray_{uuid.uuid4().hex}", "In the global registry only.")
    try:
        probe = Probe()
        broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
        async with App([_service(probe)], broker=broker, data_dir=tmp_path) as app:
            # A second App in the same process has a registry of its own: no clash.
            other = App([_service(Probe())], data_dir=tmp_path / "other")
            assert other.metrics is not None
            assert app.metrics is not None
            assert other.metrics.registry is not app.metrics.registry
            await app.publish(Job(kind="ok"))
            await probe.wait_for(1)
            await wait_until_idle(broker)
            transport = httpx.ASGITransport(app=app.asgi())
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/metrics")
                openmetrics = await client.get(
                    "/metrics", headers={"Accept": "application/openmetrics-text"}
                )
    finally:
        REGISTRY.unregister(stray)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert stray._name not in text
    assert "# TYPE actorbus_handler_duration_seconds histogram" in text
    assert (
        f'actorbus_messages_acked_total{{queue="{QUEUE}",service="{SERVICE}",type="metrics.job"}}'
        " 1.0"
    ) in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["actorbus_messages_consumed"].type == "counter"
    assert families["actorbus_mailbox_depth"].type == "gauge"
    assert "process_cpu_seconds" in families or sys.platform != "linux"
    assert openmetrics.status_code == 200
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_the_standalone_metrics_port(tmp_path: Path) -> None:
    probe = Probe()
    async with App([_service(probe)], data_dir=tmp_path, metrics_port="127.0.0.1:0") as app:
        assert app.metrics_address is not None
        host, port = app.metrics_address
        assert host == "127.0.0.1"
        assert port > 0
        await app.publish(Job(kind="ok"))
        await probe.wait_for(1)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            response = await client.get("/metrics")
            missing = await client.get("/nothing")
            wrong = await client.post("/metrics")
            head = await client.head("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "actorbus_app_ready 1.0" in response.text
    assert 'actorbus_handler_duration_seconds_count{queue="metered.queue"' in response.text
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "not_found",
        "detail": "no route for GET /nothing; try GET /metrics",
    }
    assert wrong.status_code == 405
    assert wrong.json() == {"error": "method_not_allowed", "detail": {"allowed": ["GET", "HEAD"]}}
    assert wrong.headers["allow"] == "GET, HEAD"
    assert head.status_code == 200
    assert head.content == b""
    # Closed with the App.
    with pytest.raises(OSError, match=r"connect|refused"):
        await anyio.connect_tcp(host, port)


async def test_a_port_in_use_fails_the_start(tmp_path: Path) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        app = App([_service(Probe())], data_dir=tmp_path, metrics_port=port)
        with pytest.raises(
            ConfigurationError, match=f"cannot listen for metrics on 127.0.0.1:{port}"
        ):
            async with app:
                pass


def test_metrics_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="invalid metrics address 'nonsense'"):
        App([_service(Probe())], metrics_port="nonsense")
    with pytest.raises(ConfigurationError, match="invalid metrics port 70000"):
        App([_service(Probe())], metrics_port=70000)
    with pytest.raises(ConfigurationError, match="metrics_port=9100 needs metrics"):
        App([_service(Probe())], metrics=False, metrics_port=9100)
    registry = CollectorRegistry()
    app = App([_service(Probe())], metrics=registry)
    assert app.metrics is not None
    assert app.metrics.registry is registry
    assert registry.get_sample_value("actorbus_app_ready") == 0


async def test_metrics_off_does_no_metrics_work(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    probe = Probe()
    async with App([_service(probe)], data_dir=tmp_path, metrics=False) as app:
        assert app.metrics is None
        await app.publish(Job(kind="ok"))
        await probe.wait_for(1)
        transport = httpx.ASGITransport(app=app.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/metrics")
    assert response.status_code == 404
    assert "actorbus[metrics]" in response.json()["detail"]


async def test_without_prometheus_client_nothing_is_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "actorbus.observe._metrics")
    probe = Probe()
    async with App([_service(probe)], data_dir=tmp_path) as app:
        assert app.metrics is None
        await app.publish(Job(kind="ok"))
        await probe.wait_for(1)
    assert "actorbus.observe._metrics" not in sys.modules
    with pytest.raises(ConfigurationError, match=r"pip install 'actorbus\[metrics\]'"):
        App([_service(probe)], metrics_port=0)


def test_the_cli_option_and_its_environment_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    from actorbus.cli._parser import build_parser

    args = build_parser().parse_args(["run", "services", "--metrics", "127.0.0.1:9100"])
    assert args.metrics == "127.0.0.1:9100"
    assert build_parser().parse_args(["run", "services"]).metrics == "off"
    monkeypatch.setenv("ACTORBUS_METRICS", "0.0.0.0:9200")
    assert build_parser().parse_args(["run", "services"]).metrics == "0.0.0.0:9200"


class _Broken:
    def collect(self) -> Any:
        raise RuntimeError("collector bug")


async def test_a_failing_collector_answers_500_and_the_app_keeps_running(tmp_path: Path) -> None:
    probe = Probe()
    async with App([_service(probe)], data_dir=tmp_path, metrics_port=0) as app:
        assert app.metrics is not None
        assert app.metrics_address is not None
        host, port = app.metrics_address
        app.metrics.registry.register(_Broken())  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            broken = await client.get("/metrics")
        assert broken.status_code == 500
        assert broken.json() == {"error": "internal_error", "detail": "RuntimeError"}
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(b"nonsense\r\n\r\n")
            answer = await stream.receive()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        await app.publish(Job(kind="ok"))
        await probe.wait_for(1)  # still consuming


async def test_requests_are_counted_by_outcome() -> None:
    async with App([stock_service()], broker="memory://", exchange=EXCHANGE) as app:
        assert value(app, "actorbus_requests_total") == 0
        await app.request(ReserveStock(order_id="o-1", qty=1), StockReserved, timeout=10)
        with pytest.raises(RequestTimeoutError):
            await app.request(NeverAnswered(order_id="o-2"), StockReserved, timeout=0.05)
        assert value(app, "actorbus_requests_total") == 2
        assert value(app, "actorbus_request_outcomes_total", outcome="replied") == 1
        assert value(app, "actorbus_request_outcomes_total", outcome="timed_out") == 1
        assert value(app, "actorbus_request_late_replies_total") == 0
        assert value(app, "actorbus_requests_in_flight") == 0
