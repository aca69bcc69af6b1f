"""Faults of the data directory at the command line: read-only, and a disk that fills up.

``python -m actorbus run services --data-dir DIR`` on its defaults (the embedded broker and
the SQLite store under DIR). A read-only data directory ends the process at start with exit
code 1 and a message naming the path; a full disk answers requests at once with an error
(never a hang), turns readiness false, names the file and the cause in the log, and the
system recovers by itself once there is room again. Both need a tmpfs mount (root); without
one the cases are skipped with the reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from ..faults._harness import REPO, eventually
from ._system import DefaultRun

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(90)]


def _mount(path: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")


def _remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: room to start the reference system and a few orders, then full."""
    mount = tmp_path / "disk"
    mount.mkdir()
    _mount(mount, "size=2m")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def run_to_exit(data_dir: Path, timeout: float = 30) -> tuple[int, str]:
    """``python -m actorbus run services --data-dir DIR``; return its exit code and stderr."""
    env = {"PYTHONPATH": str(REPO), "ACTORBUS_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    with anyio.fail_after(timeout):  # a hang fails here
        done = await anyio.run_process(
            [sys.executable, "-m", "actorbus", "run", "services", "--data-dir", str(data_dir),
             "--http", "127.0.0.1:0"],
            cwd=REPO, env=env, check=False,
        )  # fmt: skip
    return done.returncode, done.stderr.decode(errors="replace")


async def test_read_only_data_dir_exits_1_naming_the_path(disk: Path) -> None:
    _remount(disk, "ro")
    code, stderr = await run_to_exit(disk / "data")
    assert code == 1, stderr[-2000:]
    assert f"{disk / 'data'}" in stderr
    assert "read-only" in stderr.lower()


async def test_read_only_existing_data_dir_exits_1_naming_the_path(disk: Path) -> None:
    """A data directory that a previous run used, then made read-only."""
    data_dir = disk  # the process log goes beside it, off the small disk
    async with anyio.create_task_group() as tg:
        process = DefaultRun(tg, "services", data_dir=data_dir)
        await process.start()
        # One round trip first: the ready line is logged just before the process installs
        # its SIGTERM handler, and a SIGTERM in between ends it with -15 instead of 0.
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{process.base_url}/readyz")).status_code == 200
        assert await process.terminate() == 0
        tg.cancel_scope.cancel()
    assert (data_dir / "broker.sqlite3").exists()
    _remount(disk, "ro")
    code, stderr = await run_to_exit(data_dir)
    assert code == 1, stderr[-2000:]
    assert f"{data_dir / 'broker.sqlite3'}" in stderr
    assert "read-only" in stderr.lower()


async def test_full_disk_answers_at_once_turns_unready_and_recovers(disk: Path) -> None:
    data_dir = disk  # the process log goes beside it, off the small disk
    async with anyio.create_task_group() as tg, httpx.AsyncClient(timeout=10) as client:
        process = DefaultRun(tg, "services", data_dir=data_dir)
        try:
            await process.start()
            url = process.base_url
            await client.put(f"{url}/stock/ABC", json={"available": 100_000})
            # Long customer ids fill the disk quickly; every answer comes within 10 s.
            body = {"sku": "ABC", "qty": 1, "customerId": "c" * 128}
            failed: httpx.Response | None = None
            started = time.monotonic()
            for _ in range(5000):
                response = await client.post(f"{url}/orders", json=body)
                if response.status_code != 202:
                    failed = response
                    break
            assert failed is not None, "the disk never filled up"
            assert failed.status_code == 503, failed.text
            assert failed.json()["error"] == "store_unavailable", failed.text
            assert "disk is full" in failed.json()["detail"]
            assert int(failed.headers["retry-after"]) > 0
            print(f"[full disk] POST /orders: {failed.status_code} {failed.text} after "
                  f"{time.monotonic() - started:.1f} s")  # fmt: skip

            async def readiness(status: int) -> bool:
                return (await client.get(f"{url}/readyz")).status_code == status

            async def unready() -> bool:
                return await readiness(503)

            await eventually(unready, timeout=15, what="/readyz to answer 503")
            await process.log.wait_for("disk is full")
            assert process.log.count(str(data_dir)) > 0
            full = [line for line in process.log.lines if "disk is full" in line]
            assert any(str(data_dir / "broker.sqlite3") in line for line in full) or any(
                str(data_dir / "store.sqlite3") in line for line in full
            ), full[:3]

            # Room again: the system recovers without a restart.
            _remount(disk, "size=64m")

            async def ready() -> bool:
                return await readiness(200)

            await eventually(ready, timeout=30, what="/readyz to answer 200 again")
            response = await client.post(f"{url}/orders", json={"sku": "ABC", "qty": 1})
            assert response.status_code == 202, response.text
            order = f"{url}/orders/{response.json()['orderId']}"

            async def confirmed() -> bool:
                return (await client.get(order)).json()["status"] == "CONFIRMED"

            await eventually(confirmed, timeout=30, what="an order after the disk got room")
            assert process.running
            assert await process.terminate() == 0
        finally:
            await process.aclose()
            tg.cancel_scope.cancel()
