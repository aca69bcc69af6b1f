"""`python -m actorbus run` as a real process: ready line, HTTP, clean exit on signals."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

pytestmark = pytest.mark.anyio

MODULE = textwrap.dedent(
    """
    from actorbus import Event, HandlerContext, Service

    class Greeted(Event, routing_key="smoke.greeted", version=1):
        name: str

    service = Service("smoke", exchange="smoke.topic")
    seen = []

    @service.on(Greeted)
    async def greet(event: Greeted, ctx: HandlerContext) -> None:
        seen.append(event.name)
    """
)


async def _events(process: Process) -> Any:
    """Yield the JSON log events the process writes to stderr."""
    assert process.stderr is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stderr):
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if line.startswith("{"):
                yield json.loads(line)


async def _run(tmp_path: Path, *args: str) -> tuple[Process, Any]:
    (tmp_path / "smokemod.py").write_text(MODULE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ACTORBUS_LOG_FORMAT": "json"}
    process = await anyio.open_process(
        [sys.executable, "-m", "actorbus", "run", "smokemod", *args],
        cwd=tmp_path,
        env=env,
    )
    return process, _events(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_runs_until_signal_then_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    process, events = await _run(
        tmp_path, "--http", "127.0.0.1:0", "--data-dir", str(tmp_path / "data")
    )
    async with process:
        with anyio.fail_after(30):
            async for event in events:
                if event["event"] == "actorbus_ready":
                    break
        assert event["services"] == ["smoke"]
        assert event["broker"] == f"sqlite:///{tmp_path / 'data' / 'broker.sqlite3'}"
        url = event["http"]
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{url}/healthz")
            ready = await client.get(f"{url}/readyz")
            missing = await client.get(f"{url}/nope")
        assert health.status_code == 200
        assert ready.json()["status"] == "ready"
        assert missing.status_code == 404
        assert missing.json()["error"]
        process.send_signal(signum)
        names = []
        with anyio.fail_after(30):
            async for event in events:
                names.append(event["event"])
            code = await process.wait()
    assert code == 0
    assert "shutdown_requested" in names
    assert names[-1] == "actorbus_stopped"
    assert (tmp_path / "data" / "smoke").is_dir()


async def test_port_in_use_exits_2_with_the_reason(tmp_path: Path) -> None:
    with anyio.fail_after(30):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        async with listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            process, events = await _run(tmp_path, "--http", f"127.0.0.1:{port}")
            async with process:
                errors = [e async for e in events if e["level"] == "error"]
                code = await process.wait()
    assert code == 2
    assert any(f"cannot listen for HTTP on 127.0.0.1:{port}" in e["error"] for e in errors)


async def test_unreachable_broker_exits_1_without_leaking_the_password(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        process, events = await _run(
            tmp_path,
            "--http",
            "off",
            "--broker",
            "amqp://guest:s3cret@127.0.0.1:1/?connection_timeout=2&reconnect_timeout=2",
        )
        async with process:
            lines = [e async for e in events]
            code = await process.wait()
    assert code == 1
    text = json.dumps(lines)
    assert "s3cret" not in text
    assert any(e["level"] == "error" for e in lines)
