"""SIGINT/SIGTERM → graceful shutdown, through anyio's signal receiver."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

import anyio

from .._log import get_logger

__all__ = ("exit_on_second_signal", "wait_for_shutdown_signal")

_log = get_logger("actorbus.cli")


async def wait_for_shutdown_signal(ready: Callable[[], None] | None = None) -> int:
    """Return the number of the first SIGINT or SIGTERM received.

    Args:
        ready: Called once the signals are caught (e.g. to log that the process is ready),
            so that a signal sent right after that line is handled, not fatal.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        if ready is not None:
            ready()
        async for signum in signals:
            _log.info("shutdown_requested", signal=signal.Signals(signum).name)
            return int(signum)
    raise RuntimeError("signal receiver closed")  # pragma: no cover


def exit_on_second_signal(code: int) -> None:
    """While a graceful stop runs, end the process at once, quietly, on another signal.

    A second Ctrl-C means "stop now": rather than interrupt every task (a traceback each),
    log one line and exit with ``code``. Nothing acknowledged is lost: deliveries that were
    not acked are redelivered, and what was committed stays committed.
    """

    def exit_now(signum: int, frame: FrameType | None) -> None:
        _log.warning(
            "shutdown_forced",
            signal=signal.Signals(signum).name,
            detail="a second signal while stopping: exiting at once; unacknowledged "
            "messages will be delivered again",
        )
        sys.stderr.flush()
        os._exit(code)

    signal.signal(signal.SIGINT, exit_now)
    signal.signal(signal.SIGTERM, exit_now)
