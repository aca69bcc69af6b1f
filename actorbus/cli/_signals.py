"""SIGINT/SIGTERM → graceful shutdown; a second one while stopping → exit at once, quietly."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio

from .._log import get_logger

__all__ = ("serve_until_signal",)

_log = get_logger("actorbus.cli")

T = TypeVar("T")


async def serve_until_signal(
    run: Callable[[Callable[[], Awaitable[None]]], Awaitable[T]], forced_exit_code: int
) -> T:
    """Run ``run(wait)`` with SIGINT and SIGTERM caught from before it starts to after it ends.

    ``run`` enters what it serves, logs that it is ready, awaits ``wait()`` (which returns at
    the first signal, logged as ``shutdown_requested``), then stops gracefully. The signals
    stay caught during that stop: a second one means "stop now", and rather than interrupt
    every task (a traceback each) the process logs one ``shutdown_forced`` line and exits
    with ``forced_exit_code``. Nothing acknowledged is lost that way: deliveries not acked
    are delivered again, and what was committed stays committed.

    Raises:
        Whatever ``run`` raises (unwrapped from the task group when it is a single error).
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def wait() -> None:
            async for signum in signals:
                _log.info("shutdown_requested", signal=signal.Signals(signum).name)
                tg.start_soon(_exit_on_next, signals, forced_exit_code)
                return

        try:
            async with anyio.create_task_group() as tg:
                result = await run(wait)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise
        return result


async def _exit_on_next(signals: AsyncIterator[int], code: int) -> None:
    async for signum in signals:
        _log.warning(
            "shutdown_forced",
            signal=signal.Signals(signum).name,
            detail="a second signal while stopping: exiting at once; unacknowledged "
            "messages will be delivered again",
        )
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    cancelled = anyio.get_cancelled_exc_class()
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        elif not isinstance(exc, cancelled):
            found.append(exc)
    return found
