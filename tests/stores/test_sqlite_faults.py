"""The SQLite store under bad input and faults."""

from __future__ import annotations

from pathlib import Path

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
