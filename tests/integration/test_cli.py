"""Smoke test: ``python -m actorbus run services`` as a subprocess, on a real socket."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import ByteReceiveStream

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Lines:
    """Collects a stream's lines in the background; lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = anyio.Event()

    async def drain(self, stream: ByteReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_for(self, text: str) -> str:
        while True:
            changed = self._changed
            for line in self.lines:
                if text in line:
                    return line
            await changed.wait()


@pytest.mark.parametrize("flow", ["choreography", "orchestration"])
async def test_run_services_serves_orders_and_stops_cleanly(tmp_path: Path, flow: str) -> None:
    port = _free_port()
    env = {**os.environ, "ORDER_FLOW": flow, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "actorbus", "run", "services",
        "--http", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    stderr = _Lines()
    stdout = _Lines()
    async with await anyio.open_process(command, cwd=REPO, env=env) as process:
        assert process.stderr is not None
        assert process.stdout is not None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stderr.drain, process.stderr)
                tg.start_soon(stdout.drain, process.stdout)
                with anyio.fail_after(30):
                    await stderr.wait_for("actorbus_ready")
                    curl_line = await stderr.wait_for("front_door_ready")
                    pasted = (await stdout.wait_for("curl ")).strip()
                assert f"curl -s -X POST http://127.0.0.1:{port}/orders" in curl_line
                # What a person pastes is a shell command whose body is JSON as written.
                words = shlex.split(pasted)
                assert words[:4] == ["curl", "-s", "-X", "POST"]
                assert json.loads(words[words.index("-d") + 1])["sku"] == "ABC"
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    response = await client.post("/orders", json={"sku": "ABC", "qty": 1})
                    assert response.status_code == 202
                    order_id = response.json()["orderId"]
                    with anyio.fail_after(15):
                        await stderr.wait_for('"event": "order_confirmed"')
                    order = (await client.get(f"/orders/{order_id}")).json()
                    assert order["status"] == "CONFIRMED"
                    assert (await client.get("/healthz")).status_code == 200
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    code = await process.wait()
                tg.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.kill()
    assert code == 0, "\n".join(stderr.lines[-30:])
    assert any("actorbus_stopped" in line for line in stderr.lines)
