"""The console in a real browser: headless Chromium, driven by Playwright, on a live system.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``ACTORBUS_CHROMIUM``) and the
``playwright`` Python package; never ``playwright install`` (it downloads browsers). The
screenshot of the run is written under ``tests/console/artifacts/`` (git-ignored) and its path
printed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from .conftest import TOKEN, console_app, publish_undecodable, wait_for_dead_letters

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("ACTORBUS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.mark.anyio
async def test_the_console_shows_a_live_system_and_replays_a_dead_letter(
    browser: object, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    async with console_app(tmp_path, http="127.0.0.1:0") as app:
        assert app.http_address is not None
        host, port = app.http_address
        base = f"http://{host}:{port}"
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{base}/ui")

        # The graph: services, the topic exchange and the queues, as boxes in an SVG.
        graph = page.locator("#graph svg")
        await expect(graph).to_be_visible(timeout=TIMEOUT_MS)
        for name in ("orders.topic", "inventory.queue", "notification.queue", "order"):
            await expect(graph.locator(f'g.node[data-name="{name}"]').first).to_be_visible()
        await expect(page.locator("#live")).to_have_text("● live", timeout=TIMEOUT_MS)
        await expect(page.locator("#ready")).to_have_text("ready")

        async with httpx.AsyncClient(base_url=base) as client:
            # Orders flow: the consumed counters move and the graph lights the edges.
            response = await client.put("/stock/ABC-1", json={"available": 100})
            assert response.status_code == 200, response.text
            for _ in range(3):
                response = await client.post("/orders", json={"sku": "ABC-1", "qty": 1})
                assert response.status_code == 202, response.text
            shipping = page.locator('#queues tr[data-queue="shipping.queue"] td.depth')
            await expect(shipping).to_have_text("0", timeout=TIMEOUT_MS)

            # A queue's depth changes: stop shipping's consumer, place orders, watch it grow.
            for sub in [s for s in app._subscriptions if s.queue == "shipping.queue"]:
                await sub.cancel()
            for _ in range(4):
                response = await client.post("/orders", json={"sku": "ABC-1", "qty": 1})
                assert response.status_code == 202, response.text
            await expect(shipping).to_have_text("4", timeout=TIMEOUT_MS)
            queue_node = graph.locator('g.node[data-name="shipping.queue"]')
            await expect(queue_node).to_have_attribute("data-depth", "4", timeout=TIMEOUT_MS)
            await expect(page.locator('#queues tr[data-queue="shipping.queue"]')).to_contain_text(
                "not ready"
            )

        # A dead letter: a message inventory cannot decode.
        message_id = await publish_undecodable(app)
        await wait_for_dead_letters(app, "inventory.queue", 1)
        chip = page.locator('#dlq-queues button[data-queue="inventory.queue"]')
        await expect(chip).to_have_text("inventory.queue.dlq (1)", timeout=TIMEOUT_MS)
        await chip.click()
        row = page.locator(f'#dlq tr[data-message-id="{message_id}"]')
        await expect(row).to_contain_text("decode-error", timeout=TIMEOUT_MS)
        await row.get_by_role("button", name="show").click()
        await expect(page.locator("#dlq-detail")).to_contain_text('"originalRoutingKey"')

        # Replay needs the token: a wrong one is refused and says so.
        await page.fill("#token", "not-the-token")
        await row.get_by_role("button", name="replay").click()
        await expect(page.locator("#dlq-result")).to_contain_text("wrong_token")
        assert await app.broker.queue_depth("inventory.queue.dlq") == 1

        await page.fill("#token", TOKEN)
        await row.get_by_role("button", name="replay").click()
        await expect(page.locator("#dlq-result")).to_contain_text(
            f"replay {message_id}: replayed 1", timeout=TIMEOUT_MS
        )
        # Still undecodable, so inventory dead-letters the replayed copy again: the log lines
        # of this flow (its correlation id) show both deaths.
        await page.fill("#correlation", f"flow-{message_id}")
        logs = page.locator("#logs")
        await expect(logs.locator("div", has_text="message_dead_lettered")).to_have_count(
            2, timeout=TIMEOUT_MS
        )
        await page.fill("#correlation", "")
        await expect(logs).to_contain_text("dead_letters_replayed", timeout=TIMEOUT_MS)

        # The AsyncAPI document and the schema check are rendered.
        await expect(page.locator("#asyncapi")).to_contain_text("order.created", timeout=TIMEOUT_MS)
        await expect(page.locator("#schema-status")).to_have_text(re.compile("ok|compatible"))

        await page.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = tmp_path / "console.png"
        await page.screenshot(path=str(shot), full_page=True)
        kept = ARTIFACTS / "console.png"
        shutil.copyfile(shot, kept)
        await page.locator("#graph-section").screenshot(path=str(ARTIFACTS / "graph.png"))
        print(f"\nconsole screenshot: {kept} (and {shot})")
        assert not errors, errors
        await page.close()


@pytest.mark.anyio
async def test_the_graph_draws_each_saga_with_its_steps(browser: object, tmp_path: Path) -> None:
    expect = playwright_api.expect
    async with console_app(tmp_path, http="127.0.0.1:0", flow="orchestration") as app:
        assert app.http_address is not None
        host, port = app.http_address
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"http://{host}:{port}/ui")
        graph = page.locator("#graph svg")
        saga = graph.locator('g.node.saga[data-name="order"]')
        await expect(saga).to_be_visible(timeout=TIMEOUT_MS)
        await expect(saga).to_have_attribute("data-service", "orchestrator")
        await expect(saga.locator("text.name")).to_have_text("saga order (orchestrator)")
        steps = saga.locator("text.step")
        await expect(steps).to_have_count(3)
        await expect(steps.nth(1)).to_contain_text("2. charge: send payment.charge")
        # The orchestrator points at its saga, and the saga box sits below every column.
        await expect(graph.locator("path.edge.saga")).to_have_count(1)
        saga_box = await saga.bounding_box()
        service = graph.locator('g.node.service[data-name="orchestrator"]').first
        service_box = await service.bounding_box()
        assert saga_box is not None
        assert service_box is not None
        assert saga_box["y"] > service_box["y"] + service_box["height"]
        await expect(page.locator("#live")).to_have_text("● live", timeout=TIMEOUT_MS)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.locator("#graph-section").screenshot(path=str(ARTIFACTS / "graph-saga.png"))
        assert not errors, errors
        await page.close()
