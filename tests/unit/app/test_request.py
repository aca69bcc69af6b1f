"""Request/reply on the memory broker (the same cases run on RabbitMQ: tests/amqp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import _request_cases as cases

pytestmark = pytest.mark.anyio


async def test_request_returns_the_typed_reply() -> None:
    await cases.happy_path("memory://")


async def test_request_times_out_on_the_app_clock() -> None:
    await cases.times_out_on_the_clock("memory://")


async def test_a_late_reply_is_dropped_and_counted() -> None:
    await cases.drops_a_late_reply("memory://")


async def test_an_unroutable_command_fails_at_once() -> None:
    await cases.unroutable_fails_at_once("memory://")


async def test_a_handler_requests() -> None:
    await cases.requests_from_a_handler("memory://")


async def test_durable_handlers_may_not_request(tmp_path: Path) -> None:
    await cases.refused_in_durable_handlers("memory://", f"sqlite:///{tmp_path}/s.sqlite3")
