"""`python -m actorbus dlq …` on NATS JetStream: list, show, replay one and all, purge."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from actorbus import App, Event, HandlerContext, RetryPolicy, Service
from actorbus.cli import main
from actorbus.runtime import Backoff

pytestmark = pytest.mark.nats


class Charged(Event, routing_key="natsdlq.charged", version=1):
    amount: int


def _service(ns: str, handled: list[int], *, broken: bool, done: Callable[[], None]) -> Service:
    svc = Service(
        f"billing-{ns}",
        exchange=f"natsdlq.{ns}",
        retry=RetryPolicy(max_attempts=2, backoff=Backoff(0.001, jitter=0)),
        retry_delays=(0.01,),
    )

    @svc.on(Charged)
    async def charge(event: Charged, ctx: HandlerContext) -> None:
        if broken:
            raise RuntimeError(f"card processor down for {event.amount}")
        handled.append(event.amount)
        done()

    return svc


async def _dead_letters(url: str, ns: str, tmp: Path, amounts: list[int]) -> str:
    """Publish ``amounts`` to a service whose handler always fails; wait for the dead letters."""
    svc = _service(ns, [], broken=True, done=lambda: None)
    async with App([svc], broker=url, data_dir=tmp) as app:
        for amount in amounts:
            await app.publish(Charged(amount=amount), correlation_id=f"order-{amount}")
        with anyio.fail_after(20):
            while await app.broker.queue_depth(svc.queue.dlq_name) < len(amounts):  # noqa: ASYNC110
                await anyio.sleep(0.02)  # the broker's own state: nothing to await but a poll
    return svc.queue.name


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--log-format", "json", "dlq", *argv, "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None


def test_list_show_replay_one_and_all_purge(
    nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = uuid.uuid4().hex[:8]
    queue = anyio.run(_dead_letters, nats_url, ns, tmp_path, [10, 20, 30, 40, 50])

    def count() -> int:
        code, listed = _json(capsys, "list", queue, "--broker", nats_url)
        assert code == 0
        assert listed["queue"] == f"{queue}.dlq"
        return int(listed["messages"])

    assert count() == 5

    code, shown = _json(capsys, "show", queue, "--broker", nats_url, "--limit", "10")
    assert code == 0
    by_amount = {json.loads(m["body"])["amount"]: m for m in shown["messages"]}
    assert sorted(by_amount) == [10, 20, 30, 40, 50]
    first = by_amount[10]
    assert first["reason"] == "handler-error"
    assert first["errorType"] == "RuntimeError"
    assert first["error"] == "card processor down for 10"
    assert first["attempts"] == 2
    assert first["originalExchange"] == f"natsdlq.{ns}"
    assert first["originalRoutingKey"] == "natsdlq.charged"
    assert first["correlationId"] == "order-10"
    assert count() == 5  # show does not consume

    async def replay_into_a_fixed_service(argv: list[str], expected: int) -> tuple[int, list[int]]:
        handled: list[int] = []
        done = anyio.Event()

        def one_more() -> None:
            if len(handled) >= expected:
                done.set()

        fixed = _service(ns, handled, broken=False, done=one_more)
        async with App([fixed], broker=nats_url, data_dir=tmp_path):
            code = await anyio.to_thread.run_sync(main, ["--log-format", "json", *argv])
            with anyio.fail_after(20):
                await done.wait()
        return code, handled

    code, handled = anyio.run(
        replay_into_a_fixed_service,
        ["dlq", "replay", queue, "--broker", nats_url, "--message-id", first["messageId"]],
        1,
    )
    assert (code, handled) == (0, [10])
    assert count() == 4

    code, handled = anyio.run(
        replay_into_a_fixed_service,
        ["dlq", "replay", queue, "--broker", nats_url, "--limit", "2"],
        2,
    )
    assert code == 0
    assert len(handled) == 2
    assert count() == 2

    code, purged = _json(capsys, "purge", queue, "--broker", nats_url, "--yes")
    assert (code, purged["purged"]) == (0, 2)
    assert count() == 0


def test_replay_all(nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns = uuid.uuid4().hex[:8]
    queue = anyio.run(_dead_letters, nats_url, ns, tmp_path, [1, 2, 3])

    async def replay_all() -> tuple[int, list[int]]:
        handled: list[int] = []
        done = anyio.Event()

        def one_more() -> None:
            if len(handled) >= 3:
                done.set()

        fixed = _service(ns, handled, broken=False, done=one_more)
        async with App([fixed], broker=nats_url, data_dir=tmp_path):
            argv = ["--log-format", "json", "dlq", "replay", queue, "--broker", nats_url, "--all"]
            code = await anyio.to_thread.run_sync(main, argv)
            with anyio.fail_after(20):
                await done.wait()
        return code, handled

    code, handled = anyio.run(replay_all)
    assert code == 0
    assert sorted(handled) == [1, 2, 3]
    out = capsys.readouterr().out
    assert "replayed 3 message(s)" in out
    code, listed = _json(capsys, "list", queue, "--broker", nats_url)
    assert (code, listed["messages"]) == (0, 0)


def test_unknown_queue_and_unreachable_broker(
    nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--log-format", "json", "dlq", "list", "nope-queue", "--broker", nats_url])
    assert code == 1
    assert "nope-queue.dlq" in capsys.readouterr().err
    bad = "nats://bob:hunter2@127.0.0.1:1?connect_timeout=1"
    code = main(["--log-format", "json", "dlq", "list", "q", "--broker", bad])
    err = capsys.readouterr().err
    assert code == 1
    assert "hunter2" not in err
    assert "broker_unavailable" in err


def test_a_replayed_dead_letter_that_fails_again_is_dead_lettered_again(
    nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its second life's retry and dead-letter copies have the ids of its first life's: within
    # the duplicate window JetStream dropped them, and the acked message was lost.
    ns = uuid.uuid4().hex[:8]
    queue = anyio.run(_dead_letters, nats_url, ns, tmp_path, [7])

    async def replay_into_the_broken_service() -> int:
        svc = _service(ns, [], broken=True, done=lambda: None)
        async with App([svc], broker=nats_url, data_dir=tmp_path) as app:
            argv = ["--log-format", "json", "dlq", "replay", queue, "--broker", nats_url, "--all"]
            code = await anyio.to_thread.run_sync(main, argv)
            with anyio.fail_after(20):
                while await app.broker.queue_depth(svc.queue.dlq_name) < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.02)  # the broker's own state: nothing to await
        return code

    assert anyio.run(replay_into_the_broken_service) == 0
    assert "replayed 1 message(s)" in capsys.readouterr().out
    code, shown = _json(capsys, "show", queue, "--broker", nats_url)
    assert code == 0
    (dead,) = shown["messages"]
    assert dead["reason"] == "handler-error"
    assert (dead["attempts"], dead["correlationId"]) == (2, "order-7")
