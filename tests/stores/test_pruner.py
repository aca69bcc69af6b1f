"""run_pruner: prunes at once, then on every interval of its clock; survives a failed prune."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actorbus.stores import run_pruner
from actorbus.stores.sqlite import SqliteStore
from actorbus.testing import ManualClock, capture_logs

pytestmark = pytest.mark.anyio


async def test_prunes_now_and_on_each_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SqliteStore(f"sqlite:///{tmp_path}/p.sqlite3", inbox_window=0.0)
    async with store, anyio.create_task_group() as tg:
        async with store.transaction() as tx:
            await tx.inbox.claim("c", "old")
        await tg.start(
            lambda task_status: run_pruner(store, interval=60, clock=clock, task_status=task_status)
        )
        assert await store.run(lambda tx: tx.fetchval("SELECT COUNT(*) FROM actorbus_inbox")) == 0
        async with store.transaction() as tx:
            await tx.inbox.claim("c", "later")
        await clock.advance(60)
        await anyio.wait_all_tasks_blocked()
        assert await store.run(lambda tx: tx.fetchval("SELECT COUNT(*) FROM actorbus_inbox")) == 0
        tg.cancel_scope.cancel()


async def test_a_failed_prune_is_logged_and_the_task_goes_on(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SqliteStore(f"sqlite:///{tmp_path}/p.sqlite3")  # never opened: prune fails
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: run_pruner(
                    store, interval=5, clock=clock, task_status=task_status
                )
            )
            await clock.advance(5)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    failures = [e for e in logs if e["event"] == "store_prune_failed"]
    assert len(failures) == 2
    assert "not open" in failures[0]["error"]
