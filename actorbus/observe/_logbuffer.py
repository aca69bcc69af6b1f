"""The console's recent log lines: a bounded ring buffer fed by a structlog processor.

Nothing is captured until the console asks for log lines for the first time
(:meth:`LogBuffer.install`): then one processor is put into structlog's processor chain,
right after ``merge_contextvars`` so that a handler's lines carry the ``correlation_id`` the
pipeline binds per delivery. Before that, the buffer costs nothing at all.

Records of the standard library's ``logging`` (uvicorn, aiormq, a handler's own
``logging.getLogger(...)``) reach the buffer through the same renderer's path: the processor
is also appended to the ``foreign_pre_chain`` of every structlog ``ProcessorFormatter`` on the
root logger's handlers (what ``python -m actorbus run`` configures, so that those records are
rendered like structlog's), after ``merge_contextvars``, so they carry the correlation id too
and name their logger. A process whose stdlib records do not go through a
``ProcessorFormatter`` keeps them out of the console (no handler is added behind its back).

Once installed it costs, per log line that passes the level filter (lines filtered out by
level never reach processors), one small dict built from the event's fields and a
``deque.append``: about 1-2 µs. The hot path logs no per-message lines at info level, so a
message handled without a log line costs nothing more. Memory is bounded by ``size`` lines
of a few hundred bytes each (long values are cut).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ("LogBuffer",)

#: Fields that say when and how a line was logged, not what happened: left out of ``fields``.
_META = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "correlation_id",
        "exc_info",
        "stack_info",
        # what structlog's ProcessorFormatter adds to a stdlib record's event dict
        "_record",
        "_from_structlog",
    }
)
_MAX_VALUE = 300


class LogBuffer:
    """The last ``size`` log lines of this process (structlog's and, through structlog's
    ``ProcessorFormatter``, the stdlib's), with their correlation ids.

    Args:
        size: How many lines to keep (the oldest are dropped).
    """

    def __init__(self, size: int = 2000) -> None:
        self._lines: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self.size = size

    # structlog calls this for every line that passes the level filter, once installed.
    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Record one line and pass ``event_dict`` on unchanged (a structlog processor)."""
        fields = {
            k: (v if isinstance(v, int | float | bool) or v is None else str(v)[:_MAX_VALUE])
            for k, v in event_dict.items()
            if k not in _META and v is not ...
        }
        correlation = event_dict.get("correlation_id")
        self._lines.append(
            {
                "seq": next(self._seq),
                "time": time.time(),
                "level": method,
                "event": str(event_dict.get("event", ""))[:_MAX_VALUE],
                "correlationId": None if correlation in (None, ...) else str(correlation),
                "fields": fields,
            }
        )
        return event_dict

    @property
    def installed(self) -> bool:
        """Whether the processor is in structlog's current processor chain."""
        return any(p is self for p in structlog.get_config()["processors"])

    def install(self) -> None:
        """Put the processor into structlog's chain and into the ``foreign_pre_chain`` of
        every ``ProcessorFormatter`` on the root logger (idempotent; again after a reconfigure).

        structlog's chain is changed in place, so loggers already created (and cached) see
        it too; a formatter's chain is replaced by a copy with the processor at its end.
        """
        processors: list[Any] = structlog.get_config()["processors"]
        if not any(p is self for p in processors):
            merge = structlog.contextvars.merge_contextvars
            at = processors.index(merge) + 1 if merge in processors else 0
            processors.insert(at, self)
        for formatter in _stdlib_formatters():
            chain = list(formatter.foreign_pre_chain or ())
            if not any(p is self for p in chain):
                formatter.foreign_pre_chain = [*chain, self]

    def uninstall(self) -> None:
        """Take the processor out of structlog's chain and the formatters' chains again."""
        processors: list[Any] = structlog.get_config()["processors"]
        processors[:] = [p for p in processors if p is not self]
        for formatter in _stdlib_formatters():
            chain = formatter.foreign_pre_chain or ()
            if any(p is self for p in chain):
                formatter.foreign_pre_chain = [p for p in chain if p is not self]

    def lines(
        self, *, after: int = 0, correlation_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` of the newest lines with ``seq > after``, oldest first.

        Args:
            after: Only lines newer than this sequence number.
            correlation_id: Only the lines of this business flow.
            limit: At most this many (the newest ones).
        """
        found = [
            line
            for line in list(self._lines)
            if line["seq"] > after
            and (correlation_id is None or line["correlationId"] == correlation_id)
        ]
        return found[-limit:] if limit > 0 else []


def _stdlib_formatters() -> list[structlog.stdlib.ProcessorFormatter]:
    """The structlog formatters that render the root logger's stdlib records."""
    return [
        handler.formatter
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    ]
