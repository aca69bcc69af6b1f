"""`python -m actorbus run --broker nats://…` with no NATS server there: exit 1, one clear line."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.anyio

MODULE = textwrap.dedent(
    """
    from actorbus import Event, HandlerContext, Service

    class Greeted(Event, routing_key="natsdown.greeted", version=1):
        name: str

    service = Service("natsdown", exchange="natsdown.topic")

    @service.on(Greeted)
    async def greet(event: Greeted, ctx: HandlerContext) -> None:
        pass
    """
)


def _inherited_path() -> list[str]:
    """This process's PYTHONPATH, absolute (the child runs in another directory)."""
    return [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


async def _run_against(tmp_path: Path, url: str) -> tuple[int, list[dict[str, Any]], str, float]:
    """Run the module against ``url``; return (exit code, JSON log lines, stdout, seconds)."""
    (tmp_path / "natsdownmod.py").write_text(MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *_inherited_path()]),
        "ACTORBUS_LOG_FORMAT": "json",
    }
    argv = [sys.executable, "-m", "actorbus", "run", "natsdownmod", "--http", "off",
            "--data-dir", str(tmp_path / "data"), "--broker", url]  # fmt: skip
    started = time.monotonic()
    with anyio.fail_after(30):
        result = await anyio.run_process(argv, cwd=tmp_path, env=env, check=False)
    elapsed = time.monotonic() - started
    err = result.stderr.decode()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return result.returncode, lines, err + result.stdout.decode(), elapsed


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accepted: connects succeed, no NATS greeting ever comes
        port: int = sock.getsockname()[1]
        yield port


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def _check_one_clear_line(
    code: int, lines: list[dict[str, Any]], text: str, port: int, elapsed: float, cause: str
) -> None:
    assert code == 1, text
    assert "hunter2" not in text
    errors = [e for e in lines if e["level"] in ("error", "warning", "critical")]
    assert [e["event"] for e in errors] == ["broker_unavailable"], text
    message = errors[0]["error"]
    assert f"nats://bob:***@127.0.0.1:{port}" in message
    assert cause in message, message
    assert "\n" not in message
    assert elapsed < 20, f"took {elapsed:.1f} s"


async def test_no_server_there_exits_1_with_one_line_naming_the_url(tmp_path: Path) -> None:
    port = _closed_port()
    code, lines, text, elapsed = await _run_against(
        tmp_path, f"nats://bob:hunter2@127.0.0.1:{port}"
    )
    _check_one_clear_line(code, lines, text, port, elapsed, "ConnectionRefusedError")


async def test_a_silent_server_exits_1_within_the_connect_timeout(
    tmp_path: Path, silent_port: int
) -> None:
    url = f"nats://bob:hunter2@127.0.0.1:{silent_port}?connect_timeout=1"
    code, lines, text, elapsed = await _run_against(tmp_path, url)
    _check_one_clear_line(
        code, lines, text, silent_port, elapsed, "no answer within connect_timeout=1 s"
    )
