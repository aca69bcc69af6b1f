"""A background task that prunes a store's inbox and sent outbox on an interval."""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from .._clock import Clock, SystemClock
from .._log import get_logger
from ..exceptions import StoreError
from ._protocol import Store

__all__ = ("run_pruner",)

_log = get_logger("actorbus.stores")


async def run_pruner(
    store: Store,
    *,
    interval: float = 600.0,
    clock: Clock | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Prune ``store`` now and then every ``interval`` seconds, until cancelled.

    Run it in the app's task group (``await tg.start(run_pruner, store)``). A failed prune
    (database unavailable) is logged and tried again at the next interval; it never stops
    the task.

    Args:
        store: An open store.
        interval: Seconds between prunes.
        clock: The clock to sleep on (tests pass a ``ManualClock``).
        task_status: Set when the first prune has been attempted.
    """
    sleeper = clock if clock is not None else SystemClock()
    started = False
    while True:
        try:
            await store.prune()
        except StoreError as exc:
            _log.warning("store_prune_failed", url=store.url, error=str(exc))
        if not started:
            task_status.started()
            started = True
        await sleeper.sleep(interval)
