"""The console's JSON API without a browser: shapes, the token, and the origin checks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from actorbus import App
from actorbus.cli._logging import configure_logging
from actorbus.exceptions import ConfigurationError

from .conftest import TOKEN, console_app, publish_undecodable, wait_for_dead_letters

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"  # the ASGI transport reports this as the server address
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _client(app: App) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()), base_url=BASE)


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    async with console_app(tmp_path) as app, await _client(app) as client:
        yield app, client


def _error(response: httpx.Response, status: int, error: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == error
    return body["detail"]


async def test_the_page_and_its_assets(system: tuple[App, httpx.AsyncClient]) -> None:
    _, client = system
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/ui/static/console.js"' in page.text
    for asset, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        response = await client.get(f"/ui/static/{asset}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    _error(await client.get("/ui/static/..%2F..%2Fetc%2Fpasswd"), 404, "not_found")
    _error(await client.get("/ui/nowhere"), 404, "not_found")
    _error(await client.post("/ui"), 405, "method_not_allowed")
    # the front door's own routes are untouched
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_state_shape(system: tuple[App, httpx.AsyncClient]) -> None:
    _, client = system
    response = await client.post("/orders", json={"sku": "X-1", "qty": 1})
    assert response.status_code == 202
    state = (await client.get("/ui/api/state")).json()
    assert set(state) >= {"time", "uptime", "ready", "broker", "metrics", "queues"}
    assert state["ready"] is True
    assert state["broker"] == {"url": "memory://", "ready": True}
    assert state["actions"] == {"enabled": True, "detail": None}
    queues = {q["queue"]: q for q in state["queues"]}
    assert set(queues) == {
        "order.queue",
        "inventory.queue",
        "notification.queue",
        "shipping.queue",
        "payment.queue",
    }
    q = queues["inventory.queue"]
    assert set(q) >= {"service", "dlq", "depth", "deadLetters", "inFlight", "consumers", "ready"}
    assert q["dlq"] == "inventory.queue.dlq"
    assert q["consumers"] == 1
    assert q["ready"] is True
    assert set(q["totals"]) == set(q["rates"]) == {"consumed", "acked", "retried", "deadLettered"}
    sups = {s["service"]: s for s in state["supervisors"]}
    child = sups["inventory"]["children"][0]
    assert child["name"] == "inventory.consumer-0"
    assert child["kind"] == "actor"
    assert child["state"] == "running"
    assert child["restarts"] == 0
    assert child["lastError"] is None
    assert child["upFor"] >= 0


async def test_model_asyncapi_and_schema(system: tuple[App, httpx.AsyncClient]) -> None:
    _, client = system
    graph = (await client.get("/ui/api/model")).json()["graph"]
    kinds = {(n["kind"], n["name"]) for n in graph["nodes"]}
    assert ("exchange", "orders.topic") in kinds
    assert ("queue", "inventory.queue") in kinds
    assert {"source", "target", "label", "dashed"} == set(graph["edges"][0])
    doc = await client.get("/ui/api/asyncapi.json?download=1")
    assert doc.status_code == 200
    assert doc.headers["content-disposition"] == 'attachment; filename="asyncapi.json"'
    assert doc.json()["asyncapi"].startswith("3.")
    schema = (await client.get("/ui/api/schema")).json()
    assert schema["status"] == "ok"
    assert schema["snapshot"].endswith("services/schema.snapshot.json")
    assert schema["configured"] is False
    assert schema["changes"] == []


async def test_model_of_the_orchestration_has_the_saga(tmp_path: Path) -> None:
    async with console_app(tmp_path, flow="orchestration") as app, await _client(app) as client:
        graph = (await client.get("/ui/api/model")).json()["graph"]
    (saga,) = [n for n in graph["nodes"] if n["kind"] == "saga"]
    assert (saga["name"], saga["service"]) == ("order", "orchestrator")
    assert [step["step"] for step in saga["steps"]] == ["reserve", "charge", "confirm"]
    assert saga["steps"][0]["sends"] == "inventory.reserve-stock"
    assert saga["steps"][0]["label"].startswith("1. reserve: send inventory.reserve-stock")
    edge = {"source": "svc_orchestrator", "target": saga["id"], "label": "", "dashed": True}
    assert edge in graph["edges"]


async def test_schema_without_a_snapshot_says_so(tmp_path: Path) -> None:
    import services
    from actorbus.describe import ConsoleModel

    svcs = services.services("choreography")
    async with (
        console_app(tmp_path, system_model=ConsoleModel(svcs, snapshot=False)) as app,
        await _client(app) as client,
    ):
        schema = (await client.get("/ui/api/schema")).json()
        assert schema["status"] == "none"
        assert "no schema snapshot is configured" in schema["detail"]


async def test_without_a_model_the_live_parts_still_work(tmp_path: Path) -> None:
    async with console_app(tmp_path, system_model=None) as app, await _client(app) as client:
        assert (await client.get("/ui/api/model")).json()["graph"] is None
        _error(await client.get("/ui/api/asyncapi.json"), 404, "no_model")
        assert (await client.get("/ui/api/state")).status_code == 200


async def test_dead_letters_browse_show_replay_purge(
    system: tuple[App, httpx.AsyncClient],
) -> None:
    app, client = system
    first = await publish_undecodable(app)
    second = await publish_undecodable(app)
    await wait_for_dead_letters(app, "inventory.queue", 2)

    listing = (await client.get("/ui/api/dead-letters")).json()["queues"]
    assert {
        "service": "inventory",
        "queue": "inventory.queue",
        "dlq": "inventory.queue.dlq",
        "count": 2,
    } in listing
    page = (await client.get("/ui/api/dead-letters/inventory.queue")).json()
    assert page["count"] == 2
    letter = page["deadLetters"][0]
    assert letter["messageId"] == first
    assert letter["reason"] == "decode-error"
    assert letter["originalRoutingKey"] == "order.created.v2"
    assert letter["correlationId"] == f"flow-{first}"
    one = (await client.get(f"/ui/api/dead-letters/inventory.queue.dlq/{second}")).json()
    assert one["messageId"] == second
    assert one["body"] == '{"orderId": 1,'
    _error(
        await client.get("/ui/api/dead-letters/inventory.queue/nope"), 404, "dead_letter_not_found"
    )
    detail = _error(await client.get("/ui/api/dead-letters/nowhere.queue"), 404, "queue_not_found")
    assert "inventory.queue" in detail["known"]

    replayed = await client.post(
        "/ui/api/dead-letters/inventory.queue/replay", json={"messageId": first}, headers=AUTH
    )
    assert replayed.json() == {"queue": "inventory.queue", "replayed": [first]}
    # still undecodable: inventory dead-letters the copy again
    await wait_for_dead_letters(app, "inventory.queue", 2)
    _error(
        await client.post(
            "/ui/api/dead-letters/inventory.queue/replay", json={"messageId": "nope"}, headers=AUTH
        ),
        404,
        "dead_letter_not_found",
    )
    _error(
        await client.post(
            "/ui/api/dead-letters/inventory.queue/replay", content=b"{", headers=AUTH
        ),
        400,
        "invalid_json",
    )
    _error(
        await client.post(
            "/ui/api/dead-letters/inventory.queue/replay", json={"id": 1}, headers=AUTH
        ),
        400,
        "invalid_body",
    )
    purged = await client.post("/ui/api/dead-letters/inventory.queue/purge", headers=AUTH)
    assert purged.json() == {"queue": "inventory.queue", "purged": 2}
    assert await app.broker.queue_depth("inventory.queue.dlq") == 0


async def test_actions_need_the_token(system: tuple[App, httpx.AsyncClient]) -> None:
    app, client = system
    await publish_undecodable(app)
    await wait_for_dead_letters(app, "inventory.queue", 1)
    url = "/ui/api/dead-letters/inventory.queue/purge"
    _error(await client.post(url), 401, "token_required")
    _error(await client.post(url, headers={"Authorization": "Basic x"}), 401, "token_required")
    _error(await client.post(url, headers={"Authorization": "Bearer wrong"}), 403, "wrong_token")
    _error(
        await client.post(url.replace("purge", "replay"), headers={"Authorization": "Bearer w"}),
        403,
        "wrong_token",
    )
    assert await app.broker.queue_depth("inventory.queue.dlq") == 1


async def test_without_a_token_configured_actions_are_off(tmp_path: Path) -> None:
    async with console_app(tmp_path, admin_token=None) as app, await _client(app) as client:
        state = (await client.get("/ui/api/state")).json()
        assert state["actions"]["enabled"] is False
        assert "--admin-token" in state["actions"]["detail"]
        detail = _error(
            await client.post("/ui/api/dead-letters/inventory.queue/purge", headers=AUTH),
            403,
            "actions_disabled",
        )
        assert "ACTORBUS_ADMIN_TOKEN" in detail


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Host": "evil.example:8000"}, "foreign_host"),
        ({"Host": "127.0.0.1:9999"}, "foreign_host"),
        ({"Origin": "http://evil.example"}, "foreign_origin"),
        ({"Origin": "http://127.0.0.1:8001"}, "foreign_origin"),
        ({"Origin": "null"}, "foreign_origin"),
    ],
)
async def test_foreign_host_or_origin_is_refused(
    system: tuple[App, httpx.AsyncClient], headers: dict[str, str], error: str
) -> None:
    app, client = system
    await publish_undecodable(app)
    await wait_for_dead_letters(app, "inventory.queue", 1)
    url = "/ui/api/dead-letters/inventory.queue/purge"
    _error(await client.post(url, headers={**AUTH, **headers}), 403, error)
    _error(await client.get("/ui/api/state", headers=headers), 403, error)
    assert await app.broker.queue_depth("inventory.queue.dlq") == 1


async def test_own_origin_and_localhost_are_accepted(
    system: tuple[App, httpx.AsyncClient],
) -> None:
    _, client = system
    for headers in (
        {"Origin": BASE},
        {"Host": "localhost:8000", "Origin": "http://localhost:8000"},
    ):
        assert (await client.get("/ui/api/state", headers=headers)).status_code == 200


PROXIED = ["ops.example.com", "Proxy.Example.org:8443"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "ops.example.com"},
        {"Host": "OPS.example.com:443", "Origin": "https://ops.example.com"},
        {"Host": "proxy.example.org:8443", "Origin": "https://proxy.example.org:8443"},
        {"Origin": "https://ops.example.com:8080"},  # the server's own Host, a proxied page
    ],
)
async def test_allowed_hosts_let_a_reverse_proxy_through(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    async with (
        console_app(tmp_path, console_allowed_hosts=PROXIED) as app,
        await _client(app) as client,
    ):
        assert (await client.get("/ui/api/state", headers=headers)).status_code == 200
        # The state-changing actions too (they still need the token).
        await publish_undecodable(app)
        await wait_for_dead_letters(app, "inventory.queue", 1)
        url = "/ui/api/dead-letters/inventory.queue/purge"
        response = await client.post(url, headers={**AUTH, **headers})
        assert response.json() == {"queue": "inventory.queue", "purged": 1}


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Host": "evil.example"}, "foreign_host"),
        ({"Host": "proxy.example.org:9000"}, "foreign_host"),  # that entry names its port
        ({"Host": "ops.example.com.evil.example"}, "foreign_host"),
        ({"Host": "ops.example.com", "Origin": "https://evil.example"}, "foreign_origin"),
        ({"Host": "ops.example.com", "Origin": "https://proxy.example.org"}, "foreign_origin"),
    ],
)
async def test_hosts_not_allowed_are_still_refused(
    tmp_path: Path, headers: dict[str, str], error: str
) -> None:
    async with (
        console_app(tmp_path, console_allowed_hosts=PROXIED) as app,
        await _client(app) as client,
    ):
        await publish_undecodable(app)
        await wait_for_dead_letters(app, "inventory.queue", 1)
        url = "/ui/api/dead-letters/inventory.queue/purge"
        detail = _error(await client.post(url, headers={**AUTH, **headers}), 403, error)
        assert "--console-allowed-host" in detail
        _error(await client.get("/ui/api/state", headers=headers), 403, error)
        assert await app.broker.queue_depth("inventory.queue.dlq") == 1


async def test_one_string_of_allowed_hosts_is_a_comma_separated_list(tmp_path: Path) -> None:
    allowed = "ops.example.com, proxy.example.org:8443"
    async with (
        console_app(tmp_path, console_allowed_hosts=allowed) as app,
        await _client(app) as client,
    ):
        for host in ("ops.example.com", "proxy.example.org:8443"):
            response = await client.get("/ui/api/state", headers={"Host": host})
            assert response.status_code == 200
        _error(await client.get("/ui/api/state", headers={"Host": "o"}), 403, "foreign_host")


@pytest.mark.parametrize(
    "host", ["", " ", "https://ops.example.com", "*.example.com", "a/b", "x:y", "a b"]
)
def test_an_allowed_host_must_be_a_name_and_port(host: str) -> None:
    with pytest.raises(ConfigurationError, match=r"invalid console allowed host"):
        App([], exchange="orders.topic", console_allowed_hosts=[host])


async def test_logs_are_captured_only_once_asked_and_filter_by_correlation_id(
    system: tuple[App, httpx.AsyncClient],
) -> None:
    app, client = system
    console = app.console
    assert console is not None
    assert not console.logs.installed  # nobody looked: nothing is captured
    await publish_undecodable(app)
    await wait_for_dead_letters(app, "inventory.queue", 1)
    assert (await client.get("/ui/api/logs")).json()["lines"] == []
    assert console.logs.installed
    message_id = await publish_undecodable(app)
    await wait_for_dead_letters(app, "inventory.queue", 2)
    body = (await client.get("/ui/api/logs", params={"correlationId": f"flow-{message_id}"})).json()
    assert [line["event"] for line in body["lines"]] == ["message_dead_lettered"]
    line = body["lines"][0]
    assert line["level"] == "error"
    assert line["correlationId"] == f"flow-{message_id}"
    assert line["fields"]["message_id"] == message_id
    everything = (await client.get("/ui/api/logs", params={"after": line["seq"]})).json()
    assert all(entry["seq"] > line["seq"] for entry in everything["lines"])
    _error(await client.get("/ui/api/logs", params={"after": "x"}), 400, "invalid_query")


@pytest.fixture
def cli_logging() -> Iterator[None]:
    """Logging as `python -m actorbus run` configures it; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("info", "json")
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_stdlib_log_records_reach_the_console_with_their_correlation_id(
    cli_logging: None, tmp_path: Path
) -> None:
    # A real server: its stop is what takes the buffer out of the chains again.
    async with console_app(tmp_path, http="127.0.0.1:0") as app:
        assert app.http_address is not None
        assert app.console is not None
        logs = app.console.logs
        host, port = app.http_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            assert (await client.get("/ui/api/logs")).status_code == 200  # starts capturing
            with structlog.contextvars.bound_contextvars(correlation_id="flow-lib"):
                logging.getLogger("acme.storage").warning("disk %s is %d%% full", "sda", 93)
            logging.getLogger("acme.storage").info("below the root level: neither shown nor kept")
            params = {"correlationId": "flow-lib"}
            body = (await client.get("/ui/api/logs", params=params)).json()
        assert [line["event"] for line in body["lines"]] == ["disk sda is 93% full"]
        line = body["lines"][0]
        assert line["level"] == "warning"
        assert line["correlationId"] == "flow-lib"
        assert line["fields"] == {"logger": "acme.storage"}
    (formatter,) = [
        h.formatter
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    assert all(p is not logs for p in formatter.foreign_pre_chain or ())


async def test_console_off(tmp_path: Path) -> None:
    async with console_app(tmp_path, console=False) as app, await _client(app) as client:
        assert app.console is None
        assert (await client.get("/ui")).status_code == 404


async def test_served_on_the_metrics_port_without_a_front_door(tmp_path: Path) -> None:
    async with console_app(tmp_path, metrics_port="127.0.0.1:0") as app:
        assert app.metrics_address is not None
        host, port = app.metrics_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            assert (await client.get("/ui")).status_code == 200
            state = (await client.get("/ui/api/state")).json()
            assert len(state["queues"]) == 5
            assert (await client.get("/metrics")).status_code == 200


async def test_dead_letters_on_the_embedded_sqlite_broker(tmp_path: Path) -> None:
    broker = f"sqlite:///{tmp_path / 'broker.sqlite3'}"
    async with console_app(tmp_path, broker=broker) as app, await _client(app) as client:
        message_id = await publish_undecodable(app)
        await wait_for_dead_letters(app, "inventory.queue", 1)
        page = (await client.get("/ui/api/dead-letters/inventory.queue")).json()
        assert [d["messageId"] for d in page["deadLetters"]] == [message_id]
        assert page["deadLetters"][0]["reason"] == "decode-error"
        state = (await client.get("/ui/api/state")).json()
        queues = {q["queue"]: q for q in state["queues"]}
        assert queues["inventory.queue"]["deadLetters"] == 1
        assert state["broker"]["url"].startswith("sqlite://")
        replay = "/ui/api/dead-letters/inventory.queue/replay"
        replayed = await client.post(replay, json={"messageId": message_id}, headers=AUTH)
        assert replayed.json()["replayed"] == [message_id]
        await wait_for_dead_letters(app, "inventory.queue", 1)  # undecodable: dead again
        purge = "/ui/api/dead-letters/inventory.queue/purge"
        purged = await client.post(purge, headers=AUTH)
        assert purged.json() == {"queue": "inventory.queue", "purged": 1}
