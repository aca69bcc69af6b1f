"""Helpers of the AMQP broker tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


async def eventually(
    probe: Callable[[], Awaitable[bool] | bool], *, timeout: float = 20.0, what: str = ""
) -> None:
    """Poll external state (consumer counts, readiness) until true, bounded by ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            result = probe()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or probe!r}")
