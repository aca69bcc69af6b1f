"""JetStream publish acks on one inbox subscription of the broker's own (public nats-py API).

``js.publish`` is ``nc.request`` (a NUID and ``os.urandom`` per request, an
``asyncio.wait_for`` with a timer, two futures) plus ``json.loads`` and a dataclass per
PubAck; ``js.publish_async`` has no timeout at all, so its futures hang for ever when an ack
is lost with a connection. :class:`AckWaiter` does what both do with less per message: one
wildcard subscription ``<inbox>.*`` whose callback resolves the future of each reply
subject, a counter for the tokens, a msgspec ``PubAck``, and one timer for all deadlines
(every publish waits the same ``timeout``, so the deadlines are in send order and a sweep
stops at the first one not yet due).

It is the only module of the NATS broker that uses asyncio itself: nats-py is asyncio-only
(the broker refuses other backends), and an ``anyio.Event`` per publish cost about twice
an asyncio future here.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import msgspec
import nats.errors

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ("AckWaiter", "ApiError", "PubAck", "decode_ack")


class ApiError(msgspec.Struct, gc=False):
    """The ``error`` of a JetStream API reply."""

    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, gc=False):
    """A JetStream publish ack, or its refusal (``error`` set)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: ApiError | None = None


decode_ack = msgspec.json.Decoder(PubAck).decode


class AckWaiter:
    """Futures for replies on ``<inbox>.<token>``, each failed after ``timeout`` seconds.

    Args:
        nc: The connection; replies come on one subscription of it (re-subscribed by
            nats-py after a reconnect).
        timeout: Seconds after :meth:`expect` before the future fails with
            ``nats.errors.TimeoutError`` (checked every quarter of it, so at most 1.25 times it).
    """

    def __init__(self, nc: Client, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout
        self._tick = max(timeout / 4, 0.01)
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._ids = itertools.count()
        self._pending: dict[str, tuple[asyncio.Future[Msg], float]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Subscribe to the replies."""
        await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    def expect(self) -> tuple[str, asyncio.Future[Msg]]:
        """Return a fresh reply subject and the future its reply will resolve."""
        token = str(next(self._ids))
        future: asyncio.Future[Msg] = self._loop.create_future()
        self._pending[token] = (future, self._loop.time() + self._timeout)
        if self._timer is None:
            self._timer = self._loop.call_later(self._tick, self._sweep)
        return self._prefix + token, future

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._pending.pop(msg.subject[self._cut :], None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(msg)

    def _sweep(self) -> None:
        now = self._loop.time()
        expired: list[str] = []
        for token, (_, deadline) in self._pending.items():
            if deadline > now:
                break
            expired.append(token)
        for token in expired:
            future, _ = self._pending.pop(token)
            if not future.done():
                future.set_exception(nats.errors.TimeoutError())
        self._timer = self._loop.call_later(self._tick, self._sweep) if self._pending else None

    @staticmethod
    def failed(exc: BaseException) -> asyncio.Future[Msg]:
        """Return a future failed with ``exc`` (a publish that could not be sent)."""
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        return future

    def close(self) -> None:
        """Fail every outstanding future (the connection is closing) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(nats.errors.ConnectionClosedError())
