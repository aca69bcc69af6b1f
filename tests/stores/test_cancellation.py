"""A transaction cancelled at any point of its wait never stalls the units behind it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.lowlevel import checkpoint

from actorbus.stores import open_store
from actorbus.stores.sqlite import _SqliteConnection

pytestmark = pytest.mark.anyio


async def test_a_unit_cancelled_while_the_lane_sets_its_savepoint_does_not_hang_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_savepoint = anyio.Event()
    release = anyio.Event()
    original = _SqliteConnection.next_savepoint

    async def slow_savepoint(self: _SqliteConnection, previous_failed: bool) -> None:
        in_savepoint.set()
        await release.wait()  # the lane has taken the next unit but not granted it yet
        await original(self, previous_failed)

    monkeypatch.setattr(_SqliteConnection, "next_savepoint", slow_savepoint)
    async with open_store(f"sqlite:///{tmp_path}/store.sqlite3") as store:
        await store.migrate("t", ["CREATE TABLE t (x INTEGER NOT NULL)"])
        a_inside = anyio.Event()
        a_go = anyio.Event()
        b_scope = anyio.CancelScope()
        b_ran = False

        async def unit_a() -> None:
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                a_inside.set()
                await a_go.wait()

        async def unit_b() -> None:
            nonlocal b_ran
            with b_scope:
                async with store.transaction() as tx:
                    b_ran = True
                    await tx.execute("INSERT INTO t VALUES (2)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(unit_a)
            await a_inside.wait()
            tg.start_soon(unit_b)
            await anyio.wait_all_tasks_blocked()  # b is queued behind a
            a_go.set()
            await in_savepoint.wait()  # the lane took b and is setting its savepoint
            b_scope.cancel()
            await checkpoint()
            release.set()
        with anyio.fail_after(10):  # before the fix: this waited forever for b's body
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (3)")
            async with store.transaction() as tx:
                values = [row[0] for row in await tx.fetchall("SELECT x FROM t ORDER BY x")]
    assert not b_ran
    assert values == [1, 3]
