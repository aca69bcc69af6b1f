"""The SQLite store under bad input and faults."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from actorbus.exceptions import StoreUnavailableError
from actorbus.stores.sqlite import SqliteStore
from actorbus.testing import capture_logs

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The SQLite store is anyio only: it runs on trio as well."""
    return str(request.param)


async def test_a_file_that_cannot_be_created_is_unavailable_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = SqliteStore(f"sqlite:///{blocker}/x.sqlite3")
    with pytest.raises(StoreUnavailableError, match=r"store sqlite:///.*cannot open .*x\.sqlite3"):
        async with store:
            pass  # pragma: no cover


async def test_wal_and_synchronous_are_applied(tmp_path: Path) -> None:
    normal = SqliteStore(f"sqlite:///{tmp_path}/x.sqlite3?synchronous=NORMAL")
    async with normal as store, store.transaction() as tx:
        assert await tx.fetchval("PRAGMA journal_mode") == "wal"
        assert await tx.fetchval("PRAGMA synchronous") == 1  # NORMAL
    async with SqliteStore(f"sqlite:///{tmp_path}/x.sqlite3") as store, store.transaction() as tx:
        assert await tx.fetchval("PRAGMA synchronous") == 2  # FULL, the default


async def test_data_survives_reopening_and_logs_no_secrets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.sqlite3"
    with capture_logs() as logs:
        async with SqliteStore(url) as store, store.transaction() as tx:
            assert await tx.inbox.claim("c", "e-1")
    assert [e["event"] for e in logs if e["event"].startswith("store_")][-1] == "store_closed"
    async with SqliteStore(url) as store, store.transaction() as tx:
        assert not await tx.inbox.claim("c", "e-1")


async def _fill(store: SqliteStore) -> None:
    """Let the file grow no more: SQLite answers "database or disk is full", as on a full disk."""
    async with store.transaction() as tx:
        await tx.execute("CREATE TABLE t (x TEXT)")
    async with store.transaction() as tx:
        pages = await tx.fetchval("PRAGMA page_count")
        await tx.execute(f"PRAGMA max_page_count = {int(pages)}")


async def test_a_full_file_fails_every_unit_of_the_batch_as_unavailable(tmp_path: Path) -> None:
    """SQLite rolls the whole transaction back on SQLITE_FULL: the batch's other units get
    StoreUnavailableError (not "no such savepoint"), and a unit queued behind them runs in the
    next batch instead of waiting forever."""
    async with SqliteStore(f"sqlite:///{tmp_path}/x.sqlite3") as store:
        await _fill(store)
        outcomes: dict[str, BaseException | None] = {}

        async def unit(name: str, rows: int) -> None:
            try:
                async with store.transaction() as tx:
                    for _ in range(rows):
                        await tx.execute("INSERT INTO t VALUES (?)", "x" * 4000)
            except Exception as exc:
                outcomes[name] = exc
            else:
                outcomes[name] = None

        with anyio.fail_after(10):  # a unit left behind by a failed batch would hang here
            async with anyio.create_task_group() as tg:
                tg.start_soon(unit, "first", 0)
                tg.start_soon(unit, "filler", 50)
                tg.start_soon(unit, "behind", 0)
                tg.start_soon(unit, "last", 0)
        failed = {name: exc for name, exc in outcomes.items() if exc is not None}
        assert isinstance(outcomes["filler"], StoreUnavailableError)
        assert "full" in str(outcomes["filler"])
        for name, exc in failed.items():
            assert isinstance(exc, StoreUnavailableError), (name, exc)
        assert set(outcomes) == {"first", "filler", "behind", "last"}

        async with store.transaction() as tx:  # room again: the store works
            await tx.execute("PRAGMA max_page_count = 1073741823")
        async with store.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", "y")
