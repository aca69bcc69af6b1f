"""The reference services under faults, on a real RabbitMQ, through the contract command line.

Each case runs ``python -m actorbus run services --broker URL --http 127.0.0.1:PORT
--data-dir DIR`` (choreography), places orders through ``POST /orders`` with an
``Idempotency-Key`` each (retried through outages), injects one fault mid-stream, and then
checks from outside that every order completed once: ``GET /orders/{id}`` is ``CONFIRMED``,
``GET /notifications?orderId=`` holds each notification exactly once, and ``GET /stock``
went down by exactly one unit per order. Each case prints a one-line summary::

    [sigkill] sent=80 accepted=80 completed=80 lost=0 duplicated=0 time=14.2s
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from actorbus.testing._rabbitmq import RabbitMQNode

from ._harness import OrderWorkload, ServicesProcess

pytestmark = [pytest.mark.amqp, pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(90)]

#: Orders per case, and after how many accepted ones the fault strikes.
ORDERS = 80
FAULT_AT = 25


@asynccontextmanager
async def services_running(
    case: str, broker: str, data_dir: Path
) -> AsyncIterator[tuple[ServicesProcess, OrderWorkload]]:
    """Run the whole reference system in one process; yield it with a workload on it."""
    async with anyio.create_task_group() as tg:
        process = ServicesProcess(
            tg, "services", broker=broker, data_dir=data_dir,
            env={"ORDER_FLOW": "choreography"}, name=f"services ({case})",
        )  # fmt: skip
        try:
            await process.start()
            async with OrderWorkload(case, [process.base_url]) as workload:
                await workload.set_stock()
                yield process, workload
        finally:
            await process.aclose()
            tg.cancel_scope.cancel()


async def test_sigkill_of_a_services_process_mid_stream(vhost_url: str, tmp_path: Path) -> None:
    """SIGKILL the process with orders in flight, restart it on the same data directory."""
    async with services_running("sigkill", vhost_url, tmp_path / "data") as (process, work):

        async def crash_and_restart() -> None:
            work.note_fault(process, "SIGKILL")
            await process.kill()
            await process.start()

        await work.place_all(ORDERS, at={FAULT_AT: crash_and_restart})
        figures = await work.verify()
        assert process.starts == 2
    figures.check()


async def test_sigterm_under_load_exits_0_and_loses_nothing(vhost_url: str, tmp_path: Path) -> None:
    """SIGTERM with orders in flight: a clean exit (0); a restart finishes every order."""
    codes: list[int] = []
    async with services_running("sigterm", vhost_url, tmp_path / "data") as (process, work):

        async def stop_and_restart() -> None:
            work.note_fault(process, "SIGTERM")
            codes.append(await process.terminate(timeout=30))
            await process.start()

        await work.place_all(ORDERS, at={FAULT_AT: stop_and_restart})
        figures = await work.verify()
        figures.notes.append(f"exit code {codes}")
        assert process.log.count("actorbus_stopped") == 1
    assert codes == [0], process.log.tail()
    figures.check()


async def test_broker_restart_mid_stream(
    fault_node: RabbitMQNode, vhost_url: str, tmp_path: Path
) -> None:
    """The RabbitMQ node stops and starts again; the process reconnects by itself."""
    async with services_running("broker-restart", vhost_url, tmp_path / "data") as (
        process,
        work,
    ):

        async def restart_broker() -> None:
            work.note_fault(process, "broker stop")
            await anyio.to_thread.run_sync(fault_node.restart)

        await work.place_all(ORDERS, at={FAULT_AT: restart_broker})
        figures = await work.verify()
        assert process.starts == 1, "the process must survive"
        assert process.running
        assert process.log.count("amqp_connection_lost") >= 1
    figures.check()


async def test_connections_closed_by_the_server(
    fault_node: RabbitMQNode, vhost_url: str, tmp_path: Path
) -> None:
    """``rabbitmqctl close_all_connections`` mid-stream, and again after the reconnection."""
    async with services_running("conn-closed", vhost_url, tmp_path / "data") as (process, work):

        async def cut_twice() -> None:
            for cut in (1, 2):
                # Cut a live connection: the second cut waits for the first reconnection.
                with anyio.fail_after(20):
                    await process.log.wait_count('"amqp_connected"', cut)
                work.note_fault(process, f"cut {cut}")
                # --global: RabbitMQNode.close_all_connections() closes those of vhost "/" only.
                await anyio.to_thread.run_sync(
                    fault_node.ctl, "close_all_connections", "--global", "closed by a fault test"
                )

        await work.place_all(ORDERS, at={FAULT_AT: cut_twice})
        figures = await work.verify()
        assert process.starts == 1
        assert process.running
        assert process.log.count("amqp_connection_lost") >= 2
    figures.check()


async def test_paused_broker_is_detected_by_heartbeats(
    fault_node: RabbitMQNode, vhost_url: str, tmp_path: Path
) -> None:
    """SIGSTOP the node's Erlang VM: no socket closes, only missed heartbeats (2 s) tell."""
    pid = int((fault_node.base_dir / "rabbitmq.pid").read_text().strip())
    async with services_running("paused", vhost_url, tmp_path / "data") as (process, work):

        async def pause_until_noticed() -> None:
            work.note_fault(process, "SIGSTOP")
            os.kill(pid, signal.SIGSTOP)
            try:
                before = anyio.current_time()
                with anyio.fail_after(20):
                    await process.log.wait_for("amqp_connection_lost", len(process.log.lines))
                work.figures.notes.append(
                    f"loss noticed after {anyio.current_time() - before:.1f} s"
                )
            finally:
                os.kill(pid, signal.SIGCONT)

        try:
            await work.place_all(ORDERS, at={FAULT_AT: pause_until_noticed})
            figures = await work.verify()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert process.starts == 1
        assert process.running
    figures.check()
