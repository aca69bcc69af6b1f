"""Measure group commit: units/s with 1 vs 64 concurrent units, on SQLite and PostgreSQL.

Run: ``PYTHONPATH=. python tests/stores/group_commit_bench.py [units]``. Each unit claims an
inbox id, updates a row of an application table and adds an outbox row (what a durable
consumer does per delivery). PostgreSQL runs on a throwaway cluster (fsync on). Not collected
by pytest (no ``test_`` prefix); it lives here because benchmarks/ belongs to another change.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid

import anyio

from actorbus.messages import Envelope
from actorbus.stores import open_store
from actorbus.testing._postgres import PostgresCluster, find_postgres_bin


async def measure(url: str, units: int, concurrency: int) -> tuple[float, int]:
    async with open_store(url) as store:
        await store.migrate("bench", ["CREATE TABLE stock (sku TEXT PRIMARY KEY, n INTEGER)"])
        async with store.transaction() as tx:
            for i in range(64):
                await tx.execute("INSERT INTO stock VALUES (?, ?)", f"s{i}", 1_000_000)
        envelope = Envelope("m", "stock.reserved", "stock.reserved")
        before = store.stats().commits
        remaining = iter(range(units))

        async def worker(w: int) -> None:
            for i in remaining:
                async with store.transaction() as tx:
                    await tx.inbox.claim("bench", uuid.uuid4().hex)
                    await tx.execute("UPDATE stock SET n = n - 1 WHERE sku = ?", f"s{w}")
                    await tx.outbox.add("orders.topic", envelope, b'{"i": %d}' % i)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for w in range(concurrency):
                tg.start_soon(worker, w)
        elapsed = time.perf_counter() - start
        return units / elapsed, store.stats().commits - before


def main() -> None:
    units = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    targets: list[tuple[str, str]] = []
    directory = tempfile.mkdtemp(prefix="actorbus-bench-")
    targets.append(("sqlite FULL", f"sqlite:///{directory}/full.sqlite3"))
    targets.append(("sqlite NORMAL", f"sqlite:///{directory}/normal.sqlite3?synchronous=NORMAL"))
    cluster = None
    if find_postgres_bin() is not None:
        cluster = PostgresCluster()
        cluster.start()
        targets.append(("postgresql", cluster.url))
    try:
        for name, url in targets:
            for concurrency in (1, 64):
                n = units if concurrency > 1 else units // 4
                unique = url + ("&" if "?" in url else "?")
                if name == "postgresql":
                    unique += f"schema=b{uuid.uuid4().hex[:8]}"
                else:
                    unique = url.replace(".sqlite3", f"-{concurrency}.sqlite3")
                rate, commits = anyio.run(measure, unique, n, concurrency)
                print(
                    f"{name:14} concurrency {concurrency:3}: {rate:8.0f} units/s "
                    f"({n} units, {commits} commits)"
                )
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
