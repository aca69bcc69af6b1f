"""A transaction cancelled at any point of its wait never stalls the units behind it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.lowlevel import checkpoint

from actorbus.stores import open_store
from actorbus.stores.sqlite import _SqliteConnection
from actorbus.testing import capture_logs

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


async def test_leaving_the_store_with_a_units_error_lets_its_batch_finish(tmp_path: Path) -> None:
    """The error of a transaction body that ends the store's block fails that unit only.

    The batch it was part of finishes (rolled back to its savepoint, then committed) instead
    of being cancelled under the units that were done, and no batch failure is reported.
    """
    url = f"sqlite:///{tmp_path}/store.sqlite3"

    async def fail_inside_the_store() -> None:
        async with open_store(url) as store:
            await store.migrate("t", ["CREATE TABLE t (x INTEGER NOT NULL)"])
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                raise TypeError("boom")

    with capture_logs() as logs, pytest.raises(TypeError, match="boom"):
        await fail_inside_the_store()
    assert [e for e in logs if e["event"] == "store_batch_failed"] == []
    async with open_store(url) as store:
        assert await store.run(lambda tx: tx.fetchval("SELECT COUNT(*) FROM t")) == 0
