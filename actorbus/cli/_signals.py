"""SIGINT/SIGTERM → graceful shutdown, through anyio's signal receiver."""

from __future__ import annotations

import signal

import anyio

from .._log import get_logger

__all__ = ("wait_for_shutdown_signal",)

_log = get_logger("actorbus.cli")


async def wait_for_shutdown_signal() -> int:
    """Return the number of the first SIGINT or SIGTERM received."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            _log.info("shutdown_requested", signal=signal.Signals(signum).name)
            return int(signum)
    raise RuntimeError("signal receiver closed")  # pragma: no cover
