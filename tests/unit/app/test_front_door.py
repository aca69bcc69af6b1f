"""The front door's edges: JSON 404/405, a store or broker that is down, the access log and
the HTTP metrics.

Every error is ``{"error": <snake_case code>, "detail": ...}``; an endpoint's bug is a 500
logged once with its traceback; each request is one ``http_request`` log line and, with
metrics on, one count and one duration under its route template.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from structlog.testing import capture_logs

from actorbus import App, Command, Event, HandlerContext, Service, ServiceContext
from actorbus.app._front_door import failure_response
from actorbus.brokers.memory import MemoryBroker
from actorbus.exceptions import StoreConflictError

pytestmark = pytest.mark.anyio


class Poked(Event, routing_key="frontdoor.poked", version=1):
    item: str


class Unanswered(Command, routing_key="frontdoor.unanswered", version=1):
    item: str


def _service() -> Service:
    service = Service("front", queue="front.queue", durable=False)

    @service.route("/items/{item_id}", methods=("GET", "PUT"))
    async def item(request: Request, ctx: ServiceContext) -> Response:
        item_id = request.path_params["item_id"]
        if item_id == "teapot":
            raise HTTPException(418)
        if item_id == "taken":
            raise HTTPException(409, "item taken is reserved")
        if item_id == "boom":
            raise ValueError("boom")
        return JSONResponse({"item": item_id})

    @service.route("/asks", methods=("POST",))
    async def ask(request: Request, ctx: ServiceContext) -> Response:
        await ctx.request(Unanswered(item="x"), Poked, timeout=0.05)
        return JSONResponse({"asked": True})

    @service.on(Unanswered)
    async def swallow(command: Unanswered, ctx: HandlerContext) -> None:
        pass  # never replies

    @service.route("/pokes", methods=("POST",))
    async def poke(request: Request, ctx: ServiceContext) -> Response:
        await ctx.publish(Poked(item="x"))
        return JSONResponse({"poked": True}, status_code=202)

    return service


@asynccontextmanager
async def _client(
    tmp_path: Path, *, broker: MemoryBroker | None = None, metrics: bool = True
) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    broker = broker or MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([_service()], broker=broker, data_dir=tmp_path, metrics=metrics) as app:
        transport = httpx.ASGITransport(app=app.asgi(), client=("127.0.0.9", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client


async def test_an_unknown_path_is_a_json_not_found_naming_the_request(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        response = await client.get("/nope/x")
        post = await client.post("/orders-typo")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no route for GET /nope/x"}
    assert post.json() == {"error": "not_found", "detail": "no route for POST /orders-typo"}


async def test_a_wrong_method_is_a_json_405_with_allow(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        probe = await client.post("/healthz")
        item = await client.delete("/items/1")
    assert probe.status_code == 405
    assert probe.json() == {"error": "method_not_allowed", "detail": {"allowed": ["GET", "HEAD"]}}
    assert probe.headers["allow"] == "GET, HEAD"
    assert item.status_code == 405
    assert item.json()["error"] == "method_not_allowed"
    assert item.json()["detail"] == {"allowed": ["GET", "HEAD", "PUT"]}
    assert item.headers["allow"] == "GET, HEAD, PUT"


async def test_an_http_exception_gets_a_code_derived_from_its_status(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        teapot = await client.get("/items/teapot")
        taken = await client.get("/items/taken")
    assert teapot.status_code == 418
    assert teapot.json() == {"error": "i_m_a_teapot", "detail": None}
    assert taken.status_code == 409
    assert taken.json() == {"error": "conflict", "detail": "item taken is reserved"}


async def test_metrics_off_is_a_404_with_a_code(tmp_path: Path) -> None:
    async with _client(tmp_path, metrics=False) as (_, client):
        response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"] == "metrics_disabled"
    assert "actorbus[metrics]" in response.json()["detail"]


async def test_an_endpoint_bug_is_a_500_logged_once_with_its_traceback(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        with capture_logs() as logs:
            response = await client.get("/items/boom")
            after = await client.get("/items/1")  # the App keeps answering
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "ValueError"}
    assert after.status_code == 200
    with_traceback = [entry for entry in logs if entry.get("exc_info")]
    assert len(with_traceback) == 1, logs
    (failed,) = with_traceback
    assert failed["event"] == "http_handler_failed"
    assert failed["log_level"] == "error"
    assert failed["route"] == "/items/{item_id}"
    assert failed["error"] == "ValueError: boom"
    assert isinstance(failed["exc_info"], ValueError)


async def test_a_broker_that_is_down_is_a_503_with_retry_after(tmp_path: Path) -> None:
    broker = MemoryBroker(f"memory://guest:s3cret@{uuid.uuid4().hex}")
    async with _client(tmp_path, broker=broker) as (_, client):
        broker.faults.drop_connection()
        down = await client.post("/pokes")
        broker.faults.restore()
        again = await client.post("/pokes")
    assert down.status_code == 503, down.text
    body = down.json()
    assert body["error"] == "broker_unavailable"
    assert "connection lost" in body["detail"]
    assert "s3cret" not in down.text
    assert int(down.headers["retry-after"]) > 0
    assert again.status_code == 202


async def test_a_refused_publish_is_a_503(tmp_path: Path) -> None:
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with _client(tmp_path, broker=broker) as (_, client):
        broker.faults.fail_next_publishes(1)
        refused = await client.post("/pokes")
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "publish_refused"
    assert "retry-after" in refused.headers


async def test_a_request_that_gets_no_reply_is_a_504(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        late = await client.post("/asks")
    assert late.status_code == 504, late.text
    assert late.json()["error"] == "request_timeout"
    assert "no reply to Unanswered sent to 'frontdoor.unanswered'" in late.json()["detail"]


async def test_a_serialization_conflict_is_a_503_store_busy(tmp_path: Path) -> None:
    conflict = StoreConflictError("sqlite:///s", "UPDATE t SET x = 1", "could not serialize")
    response = failure_response(conflict)
    assert response is not None
    assert response.status_code == 503
    assert json.loads(bytes(response.body)) == {
        "error": "store_busy",
        "detail": str(conflict),
    }
    assert response.headers["retry-after"] == "1"
    assert failure_response(ValueError("a bug")) is None


def _requests(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["event"] == "http_request"]


async def test_every_request_is_logged_once_under_its_route_template(tmp_path: Path) -> None:
    async with _client(tmp_path) as (_, client):
        with capture_logs() as logs:
            await client.get("/items/42")
            await client.get("/no/such/path")
            await client.delete("/items/42")
            await client.get("/items/boom")
            await client.get("/healthz")
            await client.get("/readyz")
    lines = _requests(logs)
    assert [(e["method"], e["route"], e["status"]) for e in lines] == [
        ("GET", "/items/{item_id}", 200),
        ("GET", "<unmatched>", 404),
        ("DELETE", "/items/{item_id}", 405),
        ("GET", "/items/{item_id}", 500),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
    ]
    assert [e["log_level"] for e in lines] == ["info", "info", "info", "error", "debug", "debug"]
    ok = lines[0]
    assert ok["path"] == "/items/42"
    assert ok["client"] == "127.0.0.9:4321"
    assert isinstance(ok["duration_ms"], float)
    assert ok["duration_ms"] >= 0
    assert "error" not in ok
    assert lines[3]["error"] == "ValueError: boom"


async def test_http_requests_are_counted_and_timed_by_route_template(tmp_path: Path) -> None:
    async with _client(tmp_path) as (app, client):
        await client.get("/items/1")
        await client.get("/items/2")
        await client.put("/items/3")
        await client.get("/nowhere/1")
        await client.get("/nowhere/2")
        await client.request("BREW", "/nowhere")
        assert app.metrics is not None
        registry = app.metrics.registry

    def requests(method: str, route: str, status: str) -> float | None:
        labels = {"method": method, "route": route, "status": status}
        return registry.get_sample_value("actorbus_http_requests_total", labels)

    assert requests("GET", "/items/{item_id}", "200") == 2
    assert requests("PUT", "/items/{item_id}", "200") == 1
    assert requests("GET", "<unmatched>", "404") == 2
    assert requests("OTHER", "<unmatched>", "404") == 1
    count = registry.get_sample_value(
        "actorbus_http_request_duration_seconds_count",
        {"method": "GET", "route": "/items/{item_id}"},
    )
    assert count == 2
    assert (
        registry.get_sample_value(
            "actorbus_http_request_duration_seconds_bucket",
            {"method": "GET", "route": "/items/{item_id}", "le": "+Inf"},
        )
        == 2
    )
    samples = [
        sample.labels.get("route")
        for family in registry.collect()
        if family.name.startswith("actorbus_http")
        for sample in family.samples
    ]
    assert not any(route and "nowhere" in route for route in samples)


async def _exchange(stream: Any, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open connection; return the status and the body."""
    await stream.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(body) < length:
        body += await stream.receive()
    return int(lines[0].split()[1]), body


async def test_an_endpoint_bug_keeps_the_connection_open_on_the_real_server(
    tmp_path: Path,
) -> None:
    broker = MemoryBroker(f"memory://{uuid.uuid4().hex}")
    async with App([_service()], broker=broker, data_dir=tmp_path, http="127.0.0.1:0") as app:
        assert app.http_address is not None
        host, port = app.http_address
        async with await anyio.connect_tcp(host, port) as stream:
            failed = await _exchange(stream, "/items/boom")
            missing = await _exchange(stream, "/nope")
            ok = await _exchange(stream, "/items/1")  # the same connection
    assert failed == (500, b'{"error":"internal_error","detail":"ValueError"}')
    assert missing == (404, b'{"error":"not_found","detail":"no route for GET /nope"}')
    assert ok == (200, b'{"item":"1"}')
