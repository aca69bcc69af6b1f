"""The PostgreSQL store under faults: down at start, killed mid-stream, concurrent claims."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import anyio
import pytest

from actorbus.exceptions import StoreConflictError, StoreUnavailableError
from actorbus.stores import Transaction
from actorbus.testing import capture_logs
from actorbus.testing._postgres import PostgresCluster, find_postgres_bin

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

PostgresStore = pytest.importorskip("actorbus.stores.postgresql").PostgresStore


def _schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_database_down_at_start_names_the_url_without_its_password() -> None:
    url = f"postgresql://app:topsecret@127.0.0.1:{_closed_port()}/orders?connect_timeout=2"
    with capture_logs() as logs, pytest.raises(StoreUnavailableError) as caught:
        async with PostgresStore(url):
            pass  # pragma: no cover
    text = str(caught.value)
    assert "postgresql://app:***@127.0.0.1:" in text
    assert "/orders" in text
    assert "cannot connect" in text
    assert "topsecret" not in text
    assert "topsecret" not in repr(logs)
    assert "topsecret" not in caught.value.url


async def test_concurrent_claim_of_one_id_waits_for_the_first_commit(postgres_url: str) -> None:
    url = f"{postgres_url}?schema={_schema()}"
    async with PostgresStore(url) as first, PostgresStore(url) as second:
        claimed = anyio.Event()
        release = anyio.Event()
        answers: dict[str, bool] = {}

        async def holder() -> None:
            async with first.transaction() as tx:
                answers["first"] = await tx.inbox.claim("c", "e-1")
                claimed.set()
                await release.wait()

        async def racer() -> None:
            async with second.transaction() as tx:
                answers["second"] = await tx.inbox.claim("c", "e-1")

        async def lock_waiters(tx: Transaction) -> int:
            return int(
                await tx.fetchval(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
            )

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder)
                await claimed.wait()
                tg.start_soon(racer)
                async with PostgresStore(postgres_url) as observer:
                    # The racer blocks on the row inside the server: no event to await in
                    # this process, so poll pg_stat_activity until it shows the lock wait.
                    while await observer.run(lock_waiters) < 1:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                assert "second" not in answers
                release.set()
        assert answers == {"first": True, "second": False}


async def test_a_retryable_error_is_rerun_by_run(postgres_url: str) -> None:
    calls = 0

    async def flaky(tx: Transaction) -> str:
        nonlocal calls
        calls += 1
        await tx.execute("CREATE TABLE IF NOT EXISTS marks (n INTEGER)")
        await tx.execute("INSERT INTO marks VALUES (?)", calls)
        if calls < 3:
            await tx.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"
            )
        return "done"

    async with PostgresStore(f"{postgres_url}?schema={_schema()}") as store:
        assert await store.run(flaky) == "done"
        assert calls == 3
        rows = await store.run(lambda tx: tx.fetchall("SELECT n FROM marks"))
        assert [r[0] for r in rows] == [3]  # the conflicting attempts left nothing
        calls = -100
        with pytest.raises(StoreConflictError, match="conflict"):
            await store.run(flaky, attempts=2)


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this test's own, since the test crashes it."""
    if find_postgres_bin() is None:
        pytest.skip("needs the postgresql server binaries")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.mark.slow
async def test_killed_mid_stream_raises_unavailable_then_recovers(
    own_cluster: PostgresCluster,
) -> None:
    async with PostgresStore(f"{own_cluster.url}&connect_timeout=3".replace("&", "?", 1)) as store:
        async with store.transaction() as tx:
            await tx.execute("CREATE TABLE kept (n INTEGER)")
            await tx.execute("INSERT INTO kept VALUES (1)")
        entered = anyio.Event()
        crashed = anyio.Event()
        outcome: list[BaseException] = []

        async def in_flight() -> None:
            try:
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO kept VALUES (2)")
                    entered.set()
                    await crashed.wait()
                    await tx.execute("INSERT INTO kept VALUES (3)")
            except StoreUnavailableError as exc:
                outcome.append(exc)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight)
                await entered.wait()
                await anyio.to_thread.run_sync(own_cluster.crash)
                crashed.set()
            assert len(outcome) == 1
            assert "***" in str(outcome[0])
            assert own_cluster.password not in str(outcome[0])
            with pytest.raises(StoreUnavailableError):
                await store.ping()
            with pytest.raises(StoreUnavailableError):
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO kept VALUES (4)")

            await anyio.to_thread.run_sync(own_cluster.start)
            await store.ping()
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO kept VALUES (5)")
            rows = await store.run(lambda tx: tx.fetchall("SELECT n FROM kept ORDER BY n"))
            assert [r[0] for r in rows] == [1, 5]  # the unit cut by the crash left nothing
            assert store.stats().failed >= 2
