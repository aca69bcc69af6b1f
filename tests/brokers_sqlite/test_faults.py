"""Faults of the broker file: a read-only data dir, a full disk, a capped file, a process
that stalls while it holds leases."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from actorbus.brokers import OutboundMessage, QueueSpec, Topology
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.exceptions import BrokerConnectionError, BrokerError
from actorbus.messages import Envelope
from actorbus.testing._conformance import DeliveryCollector

from ._procs import child

pytestmark = pytest.mark.anyio

QUEUE = "fault.queue"


def message(body: bytes) -> OutboundMessage:
    return OutboundMessage("", Envelope(uuid.uuid4().hex, "test", QUEUE), body)


def _mount(path: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    _mount(mount, "size=1m")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs holding a broker file, then remounted read-only (read-only even for root)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    _mount(mount, "size=4m")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


async def test_read_only_data_dir_fails_at_enter_naming_the_path(read_only_disk: Path) -> None:
    remount_read_only(read_only_disk)
    path = read_only_disk / "data" / "broker.sqlite3"
    with anyio.fail_after(10), pytest.raises(BrokerConnectionError) as caught:
        async with SqliteBroker(f"sqlite:///{path}"):
            pass
    text = str(caught.value)
    assert str(path) in text
    assert "read-only" in text or "cannot be created" in text


async def test_existing_file_on_a_read_only_dir_fails_at_enter(read_only_disk: Path) -> None:
    path = read_only_disk / "broker.sqlite3"
    async with SqliteBroker(f"sqlite:///{path}") as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        await broker.publish(message(b"kept"))
    remount_read_only(read_only_disk)
    with anyio.fail_after(10), pytest.raises(BrokerConnectionError, match="read-only") as caught:
        async with SqliteBroker(f"sqlite:///{path}"):
            pass
    assert str(path) in str(caught.value)


async def fill(broker: SqliteBroker, size: int) -> BrokerError:
    body = os.urandom(size)
    with anyio.fail_after(30):
        for _ in range(10_000):
            try:
                await broker.publish(message(body))
            except BrokerError as exc:
                return exc
    raise AssertionError("the file never filled up")


async def test_full_disk_fails_publish_with_a_clear_error(small_disk: Path) -> None:
    path = small_disk / "broker.sqlite3"
    async with SqliteBroker(f"sqlite:///{path}") as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        error = await fill(broker, 32 * 1024)
        assert str(path) in str(error)
        assert "full" in str(error)
        assert not broker.is_ready
        # What was confirmed before is still there and readable.
        assert await broker.queue_depth(QUEUE) > 0


async def test_capped_file_fails_publish_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broker.sqlite3"
    async with SqliteBroker(f"sqlite:///{path}?max_size_mb=0.25") as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        error = await fill(broker, 8 * 1024)
        assert str(path) in str(error)
        assert "max_size_mb" in str(error)
        confirmed = await broker.queue_depth(QUEUE)
        assert confirmed > 0
        # Consuming frees room: publishing works again, and readiness comes back.
        for _ in range(confirmed):
            d = await broker.get(QUEUE)
            assert d is not None
            await d.ack()
        await broker.publish(message(b"after"))
        assert broker.is_ready


async def test_stalled_process_loses_its_leases_after_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.sqlite3'}?lease=1"
    async with SqliteBroker(url) as broker:
        await broker.declare(Topology(queues=(QueueSpec(QUEUE),)))
        await broker.publish_batch([message(b"%d" % i) for i in range(5)])
    async with anyio.create_task_group() as tg:
        async with child(tg, "hold", url, QUEUE, "5") as holder:
            await holder.wait(lambda: "holding" in holder.lines, "holding 5")
            os.kill(holder.process.pid, signal.SIGSTOP)  # alive, but no heartbeat
            try:
                async with SqliteBroker(url) as broker, anyio.create_task_group() as acks:
                    collector = DeliveryCollector(ack_in=acks, timeout=15)
                    await broker.consume(QUEUE, collector, prefetch=10)
                    got = await collector.wait_for(5)
                    assert all(d.envelope.redelivered for d in got)
                    assert sorted(d.body for d in got) == [b"%d" % i for i in range(5)]
            finally:
                os.kill(holder.process.pid, signal.SIGCONT)
        tg.cancel_scope.cancel()
