"""`python -m actorbus dlq …` against a real RabbitMQ: list, show, replay, purge, errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from actorbus import App, Event, HandlerContext, RetryPolicy, Service
from actorbus.cli import main
from actorbus.runtime import Backoff

pytestmark = pytest.mark.amqp


class Charged(Event, routing_key="dlqcli.charged", version=1):
    amount: int


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _service(
    ns: str, handled: list[int], *, broken: bool, done: anyio.Event | None = None
) -> Service:
    svc = Service(
        f"billing-{ns}",
        exchange=f"dlqcli.{ns}",
        retry=RetryPolicy(max_attempts=1, backoff=Backoff(0.001, jitter=0)),
        retry_delays=(0.01,),
    )

    @svc.on(Charged)
    async def charge(event: Charged, ctx: HandlerContext) -> None:
        if broken:
            raise RuntimeError(f"card processor down for {event.amount}")
        handled.append(event.amount)
        if done is not None:
            done.set()

    return svc


async def _dead_letters(url: str, ns: str, tmp: Path, amounts: list[int]) -> str:
    svc = _service(ns, [], broken=True)
    async with App([svc], broker=url, data_dir=tmp) as app:
        for amount in amounts:
            await app.publish(Charged(amount=amount), correlation_id=f"order-{amount}")
        with anyio.fail_after(20):
            while await app.broker.queue_depth(svc.queue.dlq_name) < len(amounts):  # noqa: ASYNC110
                await anyio.sleep(0.02)  # the broker's own state: nothing to await but a poll
    return svc.queue.name


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(["--log-format", "json", "dlq", *argv, "--json"])
    # The last line is the command's answer; lines before it are the test's own app logs.
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else None


def test_list_show_replay_purge(
    amqp_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = uuid.uuid4().hex[:8]
    queue = anyio.run(_dead_letters, amqp_url, ns, tmp_path, [10, 20, 30])

    code, listed = _json(capsys, "list", queue, "--broker", amqp_url)
    assert (code, listed) == (0, {"queue": f"{queue}.dlq", "messages": 3})

    code, shown = _json(capsys, "show", queue, "--broker", amqp_url, "--limit", "2")
    assert code == 0
    first = shown["messages"][0]
    assert first["reason"] == "handler-error"
    assert first["errorType"] == "RuntimeError"
    assert first["error"] == "card processor down for 10"
    assert first["attempts"] == 1
    assert first["originalExchange"] == f"dlqcli.{ns}"
    assert first["originalRoutingKey"] == "dlqcli.charged"
    assert first["correlationId"] == "order-10"
    # show does not consume
    assert _json(capsys, "list", queue, "--broker", amqp_url)[1]["messages"] == 3

    async def replay_into_a_fixed_service(argv: list[str]) -> tuple[int, list[int]]:
        handled: list[int] = []
        done = anyio.Event()
        fixed = _service(ns, handled, broken=False, done=done)
        async with App([fixed], broker=amqp_url, data_dir=tmp_path):
            code = await anyio.to_thread.run_sync(main, ["--log-format", "json", *argv])
            with anyio.fail_after(20):
                await done.wait()
        return code, handled

    msg_id = first["messageId"]
    code, handled = anyio.run(
        replay_into_a_fixed_service,
        ["dlq", "replay", queue, "--broker", amqp_url, "--message-id", msg_id],
    )
    assert code == 0
    assert handled == [10]
    assert _json(capsys, "list", queue, "--broker", amqp_url)[1]["messages"] == 2

    code, purged = _json(capsys, "purge", queue, "--broker", amqp_url, "--yes")
    assert (code, purged["purged"]) == (0, 2)
    assert _json(capsys, "list", queue, "--broker", amqp_url)[1]["messages"] == 0


def test_purge_without_confirmation_is_refused(
    amqp_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = uuid.uuid4().hex[:8]
    queue = anyio.run(_dead_letters, amqp_url, ns, tmp_path, [1])
    code = main(["--log-format", "json", "dlq", "purge", queue, "--broker", amqp_url])
    assert code == 2
    assert "needs confirmation: pass --yes" in capsys.readouterr().err
    assert _json(capsys, "list", queue, "--broker", amqp_url)[1]["messages"] == 1


def test_unknown_queue_and_unreachable_broker(
    amqp_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--log-format", "json", "dlq", "list", "nope-queue", "--broker", amqp_url])
    assert code == 1
    assert "nope-queue.dlq" in capsys.readouterr().err
    bad = "amqp://guest:hunter2@127.0.0.1:1/?connect_timeout=1"
    code = main(["--log-format", "json", "dlq", "list", "q", "--broker", bad])
    err = capsys.readouterr().err
    assert code == 1
    assert "hunter2" not in err
    assert "broker_unavailable" in err
