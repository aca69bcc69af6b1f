"""Scale-out across hosts on a 3-node RabbitMQ cluster: the reference system in two processes
with separate data directories, sharing one PostgreSQL store, while a RabbitMQ node is stopped
mid-stream. Counted from outside: no order lost, no notification twice, stock never oversold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from actorbus.testing._cluster import RabbitMQCluster

from ..faults._fixtures import publisher_retires_nacked_channels, require_rabbitmq_server
from ..faults._harness import OrderWorkload
from ..scaleout._hosts import hosts, shared_store
from ..stores._postgres_fixture import postgres_url

__all__ = ("postgres_url",)

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.cluster,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.anyio,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not publisher_retires_nacked_channels(),
        reason="needs the AmqpBroker publisher to reopen its channel after a basic.nack "
        "(as tests/cluster/test_cluster_failover.py)",
    ),
]

VHOST = "qqpg"
ORDERS = 100
FAULT_AT = 35


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitMQCluster]:
    """A three-node cluster with a vhost whose queues are quorum queues by default."""
    require_rabbitmq_server()
    with RabbitMQCluster(size=3, name="actorbus-qqpg") as started:
        started.add_vhost(VHOST, default_queue_type="quorum")
        yield started


async def test_two_hosts_on_postgres_survive_a_rabbitmq_node_stopped(
    cluster: RabbitMQCluster, postgres_url: str, tmp_path: Path
) -> None:
    url = cluster.vhost_url(VHOST, heartbeat=2)
    first_node = cluster.nodes[0]
    async with anyio.create_task_group() as tg:
        processes = hosts(tg, tmp_path, url, shared_store(postgres_url))
        try:
            for process in processes:
                await process.start()
            urls = [p.base_url for p in processes]
            async with OrderWorkload("pg-cluster", urls, retry_for=60) as work:
                await work.set_stock()

                async def stop_first_node() -> None:
                    work.note_fault(processes[0], "node 1 stopped")
                    await anyio.to_thread.run_sync(first_node.stop)

                await work.place_all(ORDERS, at={FAULT_AT: stop_first_node})
                figures = await work.verify(settle_timeout=90)
            assert not first_node.running
            for process in processes:
                assert process.running, process.log.tail()
            shares = [len(p.log.events("stock_reserved")) for p in processes]
            figures.notes.append(f"stock reservations per host {shares}")
        finally:
            for process in processes:
                await process.aclose()
            tg.cancel_scope.cancel()
    figures.check()
