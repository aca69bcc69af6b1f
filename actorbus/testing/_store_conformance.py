"""The store conformance suite: the behaviour every actorbus store must show.

Written once, run against every store: SQLite, PostgreSQL, and any third-party store.
Subclass :class:`StoreConformance` in a module collected by pytest and return an un-entered
store from ``make_store``::

    from actorbus.testing import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, **options: Any) -> Store:
            return MyStore(f"mystore://localhost/{self.unique}", **options)

Stores made in the same test must reach the same database (two connections to it, as two
processes of a service would have), and stores of different tests must not see each other's
rows: key the database (file, schema) on :attr:`StoreConformance.unique`, a fresh SQL
identifier per test. ``**options`` carries ``max_batch``, ``inbox_window`` and
``sent_window``. Nothing waits a fixed time: every wait is for an event, bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ..exceptions import (
    InboxKeyError,
    StoreClosedError,
    StoreIntegrityError,
    StoreSchemaError,
    StoreUsageError,
)
from ..messages import Envelope
from ..stores import Store, Transaction

__all__ = ("StoreConformance",)

#: Seconds any single wait in the suite may take before the test fails.
DEFAULT_TIMEOUT = 20.0

_APP_TABLE = ["CREATE TABLE items (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)"]


class _Boom(Exception):
    """A handler error raised on purpose."""


def _envelope(n: int = 0, **headers: Any) -> Envelope:
    return Envelope(
        message_id=f"m-{n}-{uuid.uuid4().hex[:8]}",
        type="item.added",
        routing_key="item.added",
        correlation_id=f"order-{n}",
        headers=headers,
    )


class StoreConformance:
    """Pytest base class: subclass it as ``Test…`` and implement :meth:`make_store`.

    Attributes:
        timeout: Seconds any single wait may take.
        unique: A fresh identifier per test (``t_<hex>``), set before each test.
    """

    pytestmark = pytest.mark.anyio

    timeout: float = DEFAULT_TIMEOUT
    unique: str

    @pytest.fixture(autouse=True)
    def _store_conformance_unique(self) -> None:
        self.unique = f"t_{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------- hooks

    def make_store(self, **options: Any) -> Store:
        """Return a new, un-entered store on this test's database."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_store() returning an un-entered store"
        )

    # ----------------------------------------------------------------- helpers

    @contextlib.asynccontextmanager
    async def open_store(self, **options: Any) -> AsyncIterator[Store]:
        """Make a store with :meth:`make_store`, open it, and create the ``items`` table."""
        async with self.make_store(**options) as store:
            await store.migrate("conformance", _APP_TABLE)
            yield store

    @staticmethod
    async def count(store: Store, sql: str, *args: Any) -> int:
        """Return ``int(fetchval(sql))`` in a transaction of its own."""

        async def read(tx: Transaction) -> int:
            return int(await tx.fetchval(sql, *args))

        return await store.run(read)

    async def _one_batch(self, store: Store, *bodies: Any) -> list[BaseException | None]:
        """Run ``bodies`` (``async def body(tx)``) as units of one batch; return their errors.

        The first unit holds its turn until every other unit is queued behind it, so all of
        them share one COMMIT.
        """
        results: list[BaseException | None] = [None] * len(bodies)
        release = anyio.Event()

        async def unit(index: int) -> None:
            try:
                async with store.transaction() as tx:
                    if index == 0:
                        await release.wait()
                    await bodies[index](tx)
            except Exception as exc:
                results[index] = exc

        with anyio.fail_after(self.timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(unit, 0)
                await anyio.wait_all_tasks_blocked()
                for index in range(1, len(bodies)):
                    tg.start_soon(unit, index)
                await anyio.wait_all_tasks_blocked()
                release.set()
        return results

    # ----------------------------------------------------------- lifecycle, schema

    async def test_open_ping_and_close(self) -> None:
        async with self.open_store() as store:
            await store.ping()
        with pytest.raises(StoreClosedError, match="not open"):
            async with store.transaction():
                pass  # pragma: no cover

    async def test_migrate_applies_each_step_once(self) -> None:
        steps: list[Any] = [
            "CREATE TABLE m1 (a INTEGER); CREATE TABLE m2 (b TEXT)",
        ]
        async with self.open_store() as store:
            assert await store.migrate("app", steps) == 1
            assert await store.migrate("app", steps) == 0

            async def seed(tx: Transaction) -> None:
                await tx.execute("INSERT INTO m1 (a) VALUES (?)", 41)

            steps.append(seed)
            steps.append("UPDATE m1 SET a = a + 1")
            assert await store.migrate("app", steps) == 2
            assert await self.count(store, "SELECT a FROM m1") == 42
        async with self.open_store() as again:
            assert await again.migrate("app", steps) == 0

    async def test_newer_schema_is_refused(self) -> None:
        async with self.open_store() as store:
            await store.migrate("app", ["CREATE TABLE m1 (a INTEGER)"])
            with pytest.raises(StoreSchemaError, match=r"'app' is at version 1 .* up to 0"):
                await store.migrate("app", [])
            async with store.transaction() as tx:
                await tx.execute(
                    "UPDATE actorbus_schema SET version = ? WHERE namespace = ?", 99, "actorbus"
                )
        store = self.make_store()
        with pytest.raises(StoreSchemaError, match=r"'actorbus' is at version 99 .* up to 1"):
            async with store:
                pass  # pragma: no cover

    async def test_use_after_the_block_is_refused(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                pass
            with pytest.raises(StoreClosedError, match="this transaction is not open"):
                await tx.execute("SELECT 1")

    async def test_nested_transaction_is_refused(self) -> None:
        async with self.open_store() as store:
            with pytest.raises(StoreUsageError, match="inside another transaction"):
                async with store.transaction(), store.transaction():
                    pass  # pragma: no cover
            await store.ping()  # the store still works

    # ----------------------------------------------------------------- SQL API

    async def test_sql_api_and_placeholders(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                changed = await tx.execute(
                    "INSERT INTO items (sku, qty, note) VALUES (?, ?, 'why? -- not a ?')",
                    "a",
                    1,
                )
                assert changed == 1
                await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "b", 2)
                assert await tx.execute("UPDATE items SET qty = qty + ? WHERE qty > ?", 10, 0) == 2
            async with store.transaction() as tx:
                row = await tx.fetchone("SELECT sku, qty, note FROM items WHERE sku = ?", "a")
                assert row is not None
                assert (row[0], row["qty"], row["note"]) == ("a", 11, "why? -- not a ?")
                assert await tx.fetchone("SELECT sku FROM items WHERE sku = ?", "zz") is None
                rows = await tx.fetchall("SELECT sku, qty FROM items ORDER BY sku")
                assert [(r[0], r[1]) for r in rows] == [("a", 11), ("b", 12)]
                assert await tx.fetchval("SELECT qty FROM items WHERE sku = ? /* ? */", "b") == 12
                assert await tx.fetchval("SELECT qty FROM items WHERE sku = ?", "zz") is None

    # ------------------------------------------------------------------- inbox

    async def test_inbox_claim_then_duplicate(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                assert await tx.inbox.claim("inventory", "e-1") is True
                assert await tx.inbox.claim("inventory", "e-1") is False  # same transaction
                assert await tx.inbox.claim("shipping", "e-1") is True  # ids are per consumer
            async with store.transaction() as tx:
                assert await tx.inbox.claim("inventory", "e-1") is False
                assert await tx.inbox.claim("inventory", "e-2") is True
        async with self.open_store() as again, again.transaction() as tx:
            assert await tx.inbox.claim("inventory", "e-1") is False

    @pytest.mark.parametrize("key", ["", None])
    async def test_inbox_refuses_an_empty_key(self, key: Any) -> None:
        async with self.open_store() as store:
            with pytest.raises(InboxKeyError, match="cannot be a deduplication key"):
                async with store.transaction() as tx:
                    await tx.inbox.claim("inventory", key)
            assert await self.count(store, "SELECT COUNT(*) FROM actorbus_inbox") == 0

    async def test_rolled_back_unit_leaves_nothing(self) -> None:
        async with self.open_store() as store:

            async def fails() -> None:
                async with store.transaction() as tx:
                    assert await tx.inbox.claim("inventory", "e-1")
                    await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "a", 1)
                    await tx.outbox.add("orders.topic", _envelope(), b"{}")
                    raise _Boom()

            with pytest.raises(_Boom):
                await fails()
            assert await self.count(store, "SELECT COUNT(*) FROM items") == 0
            assert await store.outbox.pending() == 0
            assert await store.outbox.claim("relay") == []
            assert await store.outbox.wait(timeout=0) is False
            async with store.transaction() as tx:  # the claim was forgotten with its unit
                assert await tx.inbox.claim("inventory", "e-1") is True
            assert store.stats().rolled_back >= 1

    # ------------------------------------------------------ batches and group commit

    async def test_failing_unit_does_not_lose_the_others_of_its_batch(self) -> None:
        async def insert(sku: str) -> Any:
            async def body(tx: Transaction) -> None:
                await tx.inbox.claim("c", f"id-{sku}")
                await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", sku, 1)

            return body

        async def fails(tx: Transaction) -> None:
            await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "bad", 1)
            raise _Boom("handler failed")

        async with self.open_store() as store:
            before = store.stats()
            bodies = [await insert("a"), fails, await insert("b"), await insert("c")]
            errors = await self._one_batch(store, *bodies)
            assert [type(e) for e in errors] == [type(None), _Boom, type(None), type(None)]
            assert store.stats().commits - before.commits == 1  # one COMMIT for all four
            rows = await store.run(lambda tx: tx.fetchall("SELECT sku FROM items ORDER BY sku"))
            assert [r[0] for r in rows] == ["a", "b", "c"]

    async def test_unique_violation_rolls_back_its_unit_alone(self) -> None:
        async def insert(sku: str, qty: int) -> Any:
            async def body(tx: Transaction) -> None:
                await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", sku, qty)

            return body

        async with self.open_store() as store:
            errors = await self._one_batch(
                store, await insert("a", 1), await insert("a", 2), await insert("b", 3)
            )
            assert errors[0] is None
            assert errors[2] is None
            assert isinstance(errors[1], StoreIntegrityError), errors[1]
            rows = await store.run(
                lambda tx: tx.fetchall("SELECT sku, qty FROM items ORDER BY sku")
            )
            assert [(r[0], r[1]) for r in rows] == [("a", 1), ("b", 3)]

    async def test_a_caught_statement_error_still_rolls_the_unit_back(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "a", 1)

            async def catches() -> None:
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "b", 1)
                    with pytest.raises(StoreIntegrityError):
                        await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "a", 2)

            with pytest.raises(StoreUsageError, match="was caught inside the block"):
                await catches()
            assert await self.count(store, "SELECT COUNT(*) FROM items") == 1

    async def test_concurrent_units_share_commits(self) -> None:
        units = 40
        async with self.open_store() as store:
            before = store.stats()

            async def one(i: int) -> None:
                async with store.transaction() as tx:
                    await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", f"s{i}", i)

            with anyio.fail_after(self.timeout):
                async with anyio.create_task_group() as tg:
                    for i in range(units):
                        tg.start_soon(one, i)
            after = store.stats()
            assert after.units - before.units == units
            assert after.commits - before.commits < units
            assert after.largest_batch > 1
            assert await self.count(store, "SELECT COUNT(*) FROM items") == units

    async def test_sequential_consumer_shares_commits_without_waiting(self) -> None:
        async with self.open_store() as store:
            before = store.stats()
            handed: list[Transaction] = []
            with anyio.fail_after(self.timeout):
                for i in range(10):
                    async with store.transaction(wait=False) as tx:
                        await tx.inbox.claim("c", f"e-{i}")
                    handed.append(tx)
                for tx in handed:
                    await tx.wait_committed()
            assert store.stats().commits - before.commits <= 2
            assert await self.count(store, "SELECT COUNT(*) FROM actorbus_inbox") == 10

    async def test_wait_committed_inside_a_body_is_refused(self) -> None:
        async with self.open_store() as store:
            async with store.transaction(wait=False) as first:
                pass
            with pytest.raises(StoreUsageError, match="would wait for its own batch"):
                async with store.transaction() as tx:
                    await tx.wait_committed()
            await first.wait_committed()

    async def test_run_returns_the_result(self) -> None:
        async with self.open_store() as store:

            async def add(tx: Transaction) -> int:
                await tx.execute("INSERT INTO items (sku, qty) VALUES (?, ?)", "a", 5)
                return int(await tx.fetchval("SELECT qty FROM items WHERE sku = ?", "a"))

            assert await store.run(add) == 5

    # ------------------------------------------------------------------ outbox

    async def test_outbox_add_claim_mark_sent(self) -> None:
        async with self.open_store() as store:
            sent = [_envelope(i, trace=b"\x00\x01", seq=i) for i in range(3)]
            async with store.transaction() as tx:
                for i, envelope in enumerate(sent):
                    await tx.outbox.add("orders.topic", envelope, f"body-{i}".encode())
            assert await store.outbox.pending() == 3
            rows = await store.outbox.claim("relay-1", limit=10)
            assert [r.envelope for r in rows] == sent
            assert [r.body for r in rows] == [b"body-0", b"body-1", b"body-2"]
            assert [r.exchange for r in rows] == ["orders.topic"] * 3
            assert [r.attempts for r in rows] == [1, 1, 1]
            assert [r.id for r in rows] == sorted(r.id for r in rows)
            assert rows[0].envelope.headers["trace"] == b"\x00\x01"
            assert await store.outbox.claim("relay-2") == []  # leased
            await store.outbox.mark_sent([r.id for r in rows])
            assert await store.outbox.pending() == 0

    async def test_outbox_claim_respects_limit_and_order(self) -> None:
        async with self.open_store() as store:
            for i in range(5):
                async with store.transaction() as tx:
                    await tx.outbox.add("x", _envelope(i), str(i).encode())
            first = await store.outbox.claim("r", limit=2)
            second = await store.outbox.claim("r", limit=10)
            assert [r.body for r in first] == [b"0", b"1"]
            assert [r.body for r in second] == [b"2", b"3", b"4"]

    async def test_outbox_lease_expires_and_the_row_is_claimed_again(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                await tx.outbox.add("x", _envelope(), b"b")
            now = time.time()
            (row,) = await store.outbox.claim("crashed", lease=30, now=now)
            assert await store.outbox.claim("other", lease=30, now=now + 29) == []
            (again,) = await store.outbox.claim("other", lease=30, now=now + 31)
            assert (again.id, again.attempts) == (row.id, 2)

    async def test_outbox_leases_name_their_owners_and_expire_frees_them(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                for i in range(3):
                    await tx.outbox.add("x", _envelope(i), str(i).encode())
            now = time.time()
            assert await store.outbox.leases(now=now) == {}
            await store.outbox.claim("dead", limit=2, lease=30, now=now)
            await store.outbox.claim("alive", limit=1, lease=30, now=now)
            assert await store.outbox.leases(now=now) == {"dead": 2, "alive": 1}
            assert await store.outbox.leases(now=now + 31) == {}  # expired leases hold nothing
            assert await store.outbox.expire("dead") == 2
            assert await store.outbox.leases(now=now) == {"alive": 1}
            freed = await store.outbox.claim("new", lease=30, now=now)
            assert [r.body for r in freed] == [b"0", b"1"]
            assert [r.attempts for r in freed] == [2, 2]
            assert await store.outbox.expire("nobody") == 0

    async def test_outbox_release_retries_later(self) -> None:
        async with self.open_store() as store:
            async with store.transaction() as tx:
                await tx.outbox.add("x", _envelope(), b"b")
            now = time.time()
            (row,) = await store.outbox.claim("r", now=now)
            await store.outbox.release([row.id], delay=10, error="nacked", now=now)
            assert await store.outbox.claim("r", now=now + 9) == []
            (again,) = await store.outbox.claim("r", now=now + 11)
            assert again.id == row.id
            await store.outbox.release([again.id])
            assert [r.id for r in await store.outbox.claim("r", now=now + 11)] == [row.id]

    async def test_two_claimers_never_get_the_same_row(self) -> None:
        total = 60
        async with self.open_store() as first, self.open_store() as second:
            async with first.transaction() as tx:
                for i in range(total):
                    await tx.outbox.add("x", _envelope(i), str(i).encode())
            got: dict[str, list[int]] = {"a": [], "b": []}

            async def drain(name: str, store: Store) -> None:
                while rows := await store.outbox.claim(name, limit=7):
                    got[name].extend(r.id for r in rows)

            with anyio.fail_after(self.timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain, "a", first)
                    tg.start_soon(drain, "b", second)
                    tg.start_soon(drain, "a", first)
            assert not set(got["a"]) & set(got["b"])
            assert len(got["a"]) + len(got["b"]) == total
            assert len(set(got["a"]) | set(got["b"])) == total

    async def test_outbox_wait_is_woken_by_a_commit(self) -> None:
        async with self.open_store() as store:
            assert await store.outbox.wait(timeout=0.01) is False
            woken: list[bool] = []

            async def waiter() -> None:
                woken.append(await store.outbox.wait(timeout=self.timeout))

            with anyio.fail_after(self.timeout):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await anyio.wait_all_tasks_blocked()
                    async with store.transaction() as tx:
                        await tx.outbox.add("x", _envelope(), b"b")
            assert woken == [True]
            # remembered: a commit before the call to wait() returns at once
            async with store.transaction() as tx:
                await tx.outbox.add("x", _envelope(), b"b")
            assert await store.outbox.wait(timeout=0) is True
            assert await store.outbox.wait(timeout=0) is False

    # --------------------------------------------------------------- retention

    async def test_prune_deletes_old_inbox_and_sent_rows_only(self) -> None:
        async with self.open_store(inbox_window=100.0, sent_window=10.0) as store:
            async with store.transaction() as tx:
                await tx.inbox.claim("c", "old")
                for i in range(3):
                    await tx.outbox.add("x", _envelope(i), b"b")
            now = time.time()
            rows = await store.outbox.claim("r", now=now)
            await store.outbox.mark_sent([rows[0].id], now=now)
            await store.outbox.release([rows[1].id], now=now)
            nothing = await store.prune(now=now + 5)
            assert (nothing.inbox, nothing.outbox) == (0, 0)
            result = await store.prune(now=now + 50)
            assert (result.inbox, result.outbox) == (0, 1)
            assert await store.outbox.pending() == 2  # unsent rows are never pruned
            result = await store.prune(now=now + 1000)
            assert (result.inbox, result.outbox) == (1, 0)
            async with store.transaction() as tx:  # past the window: no longer a duplicate
                assert await tx.inbox.claim("c", "old") is True
