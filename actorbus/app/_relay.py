"""The outbox relay: publishes what committed transactions wrote to the outbox, with confirms.

One per App (per store). It claims rows by state with a lease, publishes them in ``id`` order
as one pipelined batch with confirms, marks the confirmed ones sent and gives the others back
with a delay. It wakes right after a local COMMIT that wrote outbox rows
(``store.outbox.wait``) and polls on a timeout for the rest (rows of other processes, rows
whose delay ran out, rows of a relay that died holding a lease).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from .._backoff import Backoff
from .._host import host_key, owner_alive, process_started
from .._log import get_logger
from ..brokers import DEFAULT_EXCHANGE, OutboundMessage
from ..exceptions import StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from ..stores import Store
    from ._durable import StoreHealth

__all__ = ("OutboxRelay", "owner_dead", "relay_owner")

_log = get_logger("actorbus.app")


def relay_owner() -> str:
    """Return a name for this process's relay, recorded on the rows it claims.

    ``host/boot-id|pid|start-time|random``: a relay on the same host can tell that the owner
    died (:func:`owner_dead`) and free its rows at once rather than after the lease.
    """
    started = process_started(os.getpid()) or ""
    return f"{host_key()}|{os.getpid()}|{started}|{secrets.token_hex(3)}"


def owner_dead(owner: str) -> bool:
    """Return whether the relay named ``owner`` is known dead (on this host, its process gone).

    ``False`` when it cannot be told: another host, or a name not made by :func:`relay_owner`
    (its rows are claimed again when their lease runs out).
    """
    parts = owner.split("|")
    if len(parts) != 4 or not parts[1].isdigit():
        return False
    return owner_alive(parts[0], int(parts[1]), parts[2]) is False


class OutboxRelay:
    """Publishes a store's outbox rows after their COMMIT.

    Args:
        store: The App's store (entered).
        publish_batch: Publishes messages with confirms (``broker.publish_batch``).
        health: The store's health flag: the relay marks it down when the store fails and
            waits for it to come back.
        command_exchanges: Exchanges whose messages must reach a queue (commands): published
            ``mandatory``, as :class:`~actorbus.app._outgoing.Outgoing` does. Replies (the
            default exchange) are mandatory too; events are not.
        owner: The name claimed rows are leased to; :func:`relay_owner` by default.
        limit: Rows per claim (one pipelined batch of publishes).
        lease: Seconds a claim holds its rows: a relay that dies holding them loses nothing,
            another (or this one, restarted) claims them once the lease runs out, or at once
            when it runs on the same host and sees that the owner's process is gone (checked
            at start and every ``reclaim_every`` seconds).
        poll: Seconds between claims when nothing wakes the relay (the backstop).
        reclaim_every: Seconds between checks for dead owners' leases.
    """

    def __init__(
        self,
        store: Store,
        publish_batch: Callable[[Sequence[OutboundMessage]], Awaitable[None]],
        health: StoreHealth,
        *,
        command_exchanges: Collection[str] = (),
        owner: str | None = None,
        limit: int = 256,
        lease: float = 30.0,
        poll: float = 1.0,
        reclaim_every: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._store = store
        self._publish_batch = publish_batch
        self._health = health
        self._mandatory = frozenset(command_exchanges) | {DEFAULT_EXCHANGE}
        self.owner = owner or relay_owner()
        self._limit = limit
        self._lease = lease
        self._poll = poll
        self._reclaim_every = reclaim_every
        self._reclaimed_at = -math.inf
        self._backoff = backoff or Backoff(initial=0.2, factor=2.0, maximum=30.0, jitter=0.1)
        self._failures = 0
        self._stopping = False
        self._idle_scope: anyio.CancelScope | None = None
        self._stopped = anyio.Event()
        #: Rows published and marked sent since start.
        self.sent = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish outbox rows until :meth:`close` (or cancelled).

        :meth:`close` interrupts only the relay's waits, never a claim or a ``mark_sent``
        under way: a unit of work cancelled half-way would hold up the store's batch.
        """
        task_status.started()
        try:
            while not self._stopping:
                try:
                    await self._reclaim_dead()
                    await self.pump()
                except StoreUnavailableError as exc:
                    self._health.failed(exc, "relay")
                except StoreError as exc:
                    self._failures += 1
                    _log.warning("outbox_relay_failed", store=self._store.url, error=str(exc))
                scope = self._idle_scope = anyio.CancelScope()
                if self.stopping:  # close() came during the pump: no wait
                    break
                with scope:
                    await self._idle()
                self._idle_scope = None
        finally:
            self._stopped.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stopping

    async def _idle(self) -> None:
        """Wait for the next reason to claim: a COMMIT, the poll timeout, the store back."""
        health = self._health
        if not health.ok:
            await health.wait_up()
        elif self._failures:  # a publish failed: let the broker recover before the next try
            await anyio.sleep(self._backoff.delay(self._failures))
        else:
            await self._store.outbox.wait(timeout=self._poll)

    async def close(self, timeout: float) -> None:
        """Stop :meth:`run`, then publish what is left within ``timeout`` seconds (shutdown)."""
        with anyio.CancelScope(shield=True):
            self._stopping = True
            if self._idle_scope is not None:
                self._idle_scope.cancel()
            start = anyio.current_time()
            with anyio.move_on_after(timeout):
                await self._stopped.wait()
            await self.flush(max(0.0, timeout - (anyio.current_time() - start)))

    async def _reclaim_dead(self) -> None:
        """Free the rows leased to relays that died on this host (at most every few seconds)."""
        now = anyio.current_time()
        if now - self._reclaimed_at < self._reclaim_every:
            return
        self._reclaimed_at = now
        outbox = self._store.outbox
        for owner in await outbox.leases():
            if owner != self.owner and owner_dead(owner):
                freed = await outbox.expire(owner)
                _log.warning("outbox_lease_reclaimed", owner=owner, rows=freed)

    async def pump(self) -> int:
        """Publish claimable rows until none is left or a publish fails; return how many.

        Raises:
            StoreError: The store failed (claimed rows come back when their lease runs out).
        """
        outbox = self._store.outbox
        mandatory = self._mandatory
        published = 0
        while True:
            rows = await outbox.claim(self.owner, self._limit, self._lease)
            if not rows:
                return published
            ids = [row.id for row in rows]
            messages = [
                OutboundMessage(
                    row.exchange, row.envelope, row.body, mandatory=row.exchange in mandatory
                )
                for row in rows
            ]
            try:
                await self._publish_batch(messages)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await outbox.release(ids, error="relay stopped")
                raise
            except Exception as exc:
                self._failures += 1
                delay = self._backoff.delay(self._failures)
                error = f"{type(exc).__name__}: {exc}"
                _log.warning(
                    "outbox_publish_failed",
                    rows=len(ids),
                    first_id=ids[0],
                    retry_in=round(delay, 3),
                    error=error,
                )
                await outbox.release(ids, delay=delay, error=error[:1000])
                return published
            self._failures = 0
            await outbox.mark_sent(ids)
            published += len(ids)
            self.sent += len(ids)
            if len(rows) < self._limit:
                return published

    async def flush(self, timeout: float) -> None:
        """Publish what can be published within ``timeout`` seconds (on shutdown)."""
        with anyio.move_on_after(timeout, shield=True) as scope:
            try:
                await self.pump()
            except StoreError as exc:
                _log.warning("outbox_flush_failed", store=self._store.url, error=str(exc))
                return
        if scope.cancelled_caught:
            _log.warning("outbox_flush_timed_out", timeout=timeout)
