"""The HTTP contract: every bad request is a 4xx ``{"error", "detail"}`` that changes nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from actorbus import App
from services import services
from services.common.http import MAX_BODY_BYTES

from .conftest import System, running, store_url

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("store_matrix")]


async def _orders(system: System) -> int:
    rows = await system.query("SELECT count(*) AS n FROM orders")
    return int(rows[0]["n"])


BAD_ORDERS: list[tuple[str, bytes, int, str, str]] = [
    # (case, body, status, error, text in detail)
    ("empty body", b"", 400, "empty_body", "empty"),
    ("malformed json", b'{"sku": "ABC", "qty": ', 400, "malformed_json", "line 1 column 23"),
    ("bad utf-8", b'{"sku": "\xff", "qty": 1}', 400, "malformed_json", "not UTF-8: byte 9"),
    (
        "duplicate key",
        b'{"sku": "ABC", "qty": 1, "qty": 2}',
        400,
        "duplicate_key",
        "'qty' appears twice",
    ),
    ("not json", b"sku=ABC&qty=1", 400, "malformed_json", "JSON"),
    ("array", b"[1, 2]", 422, "invalid_body", "Expected `object`, got `array`"),
    ("qty as string", b'{"sku": "ABC", "qty": "1"}', 422, "invalid_body", "$.qty"),
    ("qty float", b'{"sku": "ABC", "qty": 1.5}', 422, "invalid_body", "$.qty"),
    ("qty bool", b'{"sku": "ABC", "qty": true}', 422, "invalid_body", "$.qty"),
    ("qty zero", b'{"sku": "ABC", "qty": 0}', 422, "invalid_body", ">= 1"),
    ("qty negative", b'{"sku": "ABC", "qty": -3}', 422, "invalid_body", ">= 1"),
    ("qty absurd", b'{"sku": "ABC", "qty": 1000000}', 422, "invalid_body", "<= 10000"),
    ("qty huge int", b'{"sku": "ABC", "qty": 1' + b"0" * 40 + b"}", 422, "invalid_body", "$.qty"),
    ("missing qty", b'{"sku": "ABC"}', 422, "invalid_body", "`qty`"),
    ("missing sku", b'{"qty": 1}', 422, "invalid_body", "`sku`"),
    ("nothing", b"{}", 422, "invalid_body", "items"),
    ("null sku", b'{"sku": null, "qty": 1}', 422, "invalid_body", "$.sku"),
    ("empty sku", b'{"sku": "", "qty": 1}', 422, "invalid_body", "$.sku"),
    ("oversized sku", b'{"sku": "' + b"A" * 65 + b'", "qty": 1}', 422, "invalid_body", "$.sku"),
    ("bad sku chars", b'{"sku": "A B", "qty": 1}', 422, "invalid_body", "$.sku"),
    ("unknown field", b'{"sku": "ABC", "qty": 1, "quantity": 2}', 422, "invalid_body", "quantity"),
    (
        "both shapes",
        b'{"sku": "ABC", "qty": 1, "items": [{"sku": "XYZ", "qty": 1}]}',
        422,
        "invalid_body",
        "not both",
    ),
    ("empty items", b'{"items": []}', 422, "invalid_body", "$.items"),
    ("items not list", b'{"items": {"sku": "ABC"}}', 422, "invalid_body", "$.items"),
    (
        "line bad qty",
        b'{"items": [{"sku": "ABC", "qty": 0}]}',
        422,
        "invalid_body",
        "$.items[0].qty",
    ),
    (
        "line unknown field",
        b'{"items": [{"sku": "ABC", "qty": 1, "x": 1}]}',
        422,
        "invalid_body",
        "x",
    ),
    (
        "duplicate sku",
        b'{"items": [{"sku": "ABC", "qty": 1}, {"sku": "ABC", "qty": 2}]}',
        422,
        "invalid_body",
        "appears twice",
    ),
    (
        "too many lines",
        b'{"items": [' + b",".join(b'{"sku": "S%d", "qty": 1}' % i for i in range(101)) + b"]}",
        422,
        "invalid_body",
        "$.items",
    ),
    (
        "customer wrong type",
        b'{"sku": "ABC", "qty": 1, "customerId": 7}',
        422,
        "invalid_body",
        "$.customerId",
    ),
    (
        "customer empty",
        b'{"sku": "ABC", "qty": 1, "customerId": ""}',
        422,
        "invalid_body",
        "$.customerId",
    ),
    (
        "customer oversized",
        b'{"sku": "ABC", "qty": 1, "customerId": "' + b"c" * 129 + b'"}',
        422,
        "invalid_body",
        "$.customerId",
    ),
    (
        "body too large",
        b'{"sku": "ABC", "qty": 1, "customerId": "' + b"c" * MAX_BODY_BYTES + b'"}',
        413,
        "body_too_large",
        "exceeds",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "error", "detail"),
    [case[1:] for case in BAD_ORDERS],
    ids=[case[0] for case in BAD_ORDERS],
)
async def test_bad_order_request_is_refused_and_changes_nothing(
    tmp_path: Path, body: bytes, status: int, error: str, detail: str
) -> None:
    async with running(services("choreography"), tmp_path) as system:
        response = await system.client.post(
            "/orders", content=body, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == status, response.text
        payload = response.json()
        assert payload["error"] == error
        assert detail in str(payload["detail"])
        assert await _orders(system) == 0
        assert await system.stock("ABC") == 100


async def test_body_larger_than_declared_limit_is_refused_while_streaming(tmp_path: Path) -> None:
    async def chunks() -> Any:
        yield b'{"sku": "ABC", "qty": 1, "customerId": "'
        for _ in range(20):
            yield b"c" * 8192
        yield b'"}'

    async with running(services("choreography"), tmp_path) as system:
        response = await system.client.post("/orders", content=chunks())
        assert response.status_code == 413
        assert response.json()["error"] == "body_too_large"
        assert await _orders(system) == 0


async def test_idempotency_key_returns_the_same_order(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        body = {"sku": "ABC", "qty": 2, "customerId": "alice"}
        first = await system.client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
        again = await system.client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})

        assert first.status_code == again.status_code == 202
        assert first.json()["orderId"] == again.json()["orderId"]
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await _orders(system) == 1
        await system.settled(first.json()["orderId"])
        assert await system.stock("ABC") == 98
        # A retry after the order settled still answers with that order.
        late = await system.client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
        assert late.json() == {"orderId": first.json()["orderId"], "status": "CONFIRMED"}

        other = await system.client.post(
            "/orders", json={**body, "qty": 3}, headers={"Idempotency-Key": "k-1"}
        )
        assert other.status_code == 422
        assert other.json()["error"] == "idempotency_key_reused"
        bad_key = await system.client.post(
            "/orders", json=body, headers={"Idempotency-Key": "x" * 256}
        )
        assert bad_key.status_code == 400
        assert bad_key.json()["error"] == "invalid_idempotency_key"
        assert await _orders(system) == 1


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"available": -1}', 422, "invalid_body"),
        (b'{"available": "5"}', 422, "invalid_body"),
        (b'{"available": 1000000001}', 422, "invalid_body"),
        (b'{"available": 5, "extra": 1}', 422, "invalid_body"),
        (b"{}", 422, "invalid_body"),
        (b"{", 400, "malformed_json"),
        (b"", 400, "empty_body"),
    ],
)
async def test_bad_stock_update_is_refused(
    tmp_path: Path, body: bytes, status: int, error: str
) -> None:
    async with running(services("choreography"), tmp_path) as system:
        response = await system.client.put("/stock/ABC", content=body)
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        assert await system.stock("ABC") == 100


async def test_stock_endpoints(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        assert (await system.client.get("/stock/NEW")).status_code == 404
        response = await system.client.put("/stock/NEW", json={"available": 7})
        assert response.json() == {"sku": "NEW", "available": 7}
        assert await system.stock("NEW") == 7
        bad = await system.client.get("/stock/bad%20sku")
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_sku"


async def test_notifications_query_is_checked(tmp_path: Path) -> None:
    async with running(services("choreography"), tmp_path) as system:
        response = await system.client.get("/notifications", params={"order": "x"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_query"
        response = await system.client.get("/notifications", params={"orderId": "x" * 200})
        assert response.status_code == 400
        empty = await system.client.get("/notifications", params={"orderId": "nope"})
        assert empty.json() == {"notifications": []}


def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    """POST like a plain Python client: no ``Expect: 100-continue``, the whole body at once."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_a_5_mb_post_from_urllib_gets_the_413_json_not_a_reset(tmp_path: Path) -> None:
    body = b'{"sku": "ABC", "qty": 1, "customerId": "' + b"c" * (5 * 1024 * 1024) + b'"}'
    async with App(
        services(),
        broker="memory://",
        data_dir=tmp_path,
        store=store_url(tmp_path),
        http="127.0.0.1:0",
    ) as app:
        assert app.http_address is not None
        host, port = app.http_address
        status, answer = await anyio.to_thread.run_sync(_post, f"http://{host}:{port}/orders", body)
    assert status == 413
    assert answer["error"] == "body_too_large"
    assert "exceeds" in str(answer["detail"])


async def test_put_stock_adds_a_new_sku_and_get_of_an_unknown_one_is_404(tmp_path: Path) -> None:
    async with running(services(), tmp_path) as system:
        unknown = await system.client.get("/stock/NEW-1")
        put = await system.client.put("/stock/NEW-1", json={"available": 7})
        after = await system.client.get("/stock/NEW-1")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "sku_not_found"
    assert put.status_code == 200
    assert after.json() == {"sku": "NEW-1", "available": 7}


async def test_a_full_store_answers_503_store_unavailable_and_recovers(tmp_path: Path) -> None:
    """SQLite's own "database or disk is full" (the file may not grow past its current size),
    not a mock: the same error a full disk gives. SQLite only (the PRAGMA caps its file)."""
    async with running(services("choreography"), tmp_path, store=store_url(tmp_path)) as system:
        async with system.app_store.transaction() as tx:
            pages = await tx.fetchval("PRAGMA page_count")
            await tx.execute(f"PRAGMA max_page_count = {int(pages)}")
        body = {"sku": "ABC", "qty": 1, "customerId": "c" * 128}
        for _ in range(500):  # the free space left in the file's last pages runs out
            full = await system.client.post("/orders", json=body)
            if full.status_code != 202:
                break
        assert full.status_code == 503, full.text
        assert full.json()["error"] == "store_unavailable"
        assert "database or disk is full" in full.json()["detail"]
        assert int(full.headers["retry-after"]) > 0

        async with system.app_store.transaction() as tx:  # room again
            await tx.execute("PRAGMA max_page_count = 1073741823")
        again = await system.client.post("/orders", json=body)
        assert again.status_code == 202, again.text
