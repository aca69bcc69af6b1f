"""Tell the person who started the process where the HTTP front door is, with a first order."""

from __future__ import annotations

import shlex
import sys

import anyio

from actorbus import ServiceContext

__all__ = ("announce_front_door",)


async def announce_front_door(ctx: ServiceContext) -> None:
    """Log the front door's URL and a ``curl`` line that places a first order; print it too.

    Runs as a background task: the app starts background tasks before its HTTP server binds
    and offers no "after start" hook, so this waits until the app reports ready. When the app
    serves no HTTP (embedded, tests with ``app.asgi()``), it logs nothing.
    """
    app = ctx.app
    # No readiness event to wait on (see the module docstring): poll, cheaply, until ready.
    while not app.is_ready:  # noqa: ASYNC110
        await anyio.sleep(0.05)
    if app.http_address is None:
        return
    host, port = app.http_address
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    body = '{"sku": "ABC", "qty": 1, "customerId": "alice"}'
    curl = (
        f"curl -s -X POST {base}/orders -H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    ctx.log.info(
        "front_door_ready",
        url=base,
        place_an_order=curl,
        then=f"curl -s {base}/orders/<orderId>",
    )
    # The log line quotes the command (JSON escapes, or a repr on a terminal); this one is
    # for a person to paste into a shell, on stdout where no log goes.
    sys.stdout.write(f"Front door: {base}\nPlace a first order:\n  {curl}\n")
    sys.stdout.flush()
