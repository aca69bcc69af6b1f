"""The static model the operator console shows: the graph, the AsyncAPI document, the schema check.

The console (``actorbus.observe``, below the App) cannot describe services itself; whoever
builds the App passes it a :class:`ConsoleModel` (``App(..., system_model=...)``; ``actorbus
run`` does). The graph and the AsyncAPI document are built once, on first use; the schema
check reads the snapshot file again when it changed on disk.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..app import Service
from ._asyncapi import build_asyncapi
from ._graph import graph_data
from ._model import describe_system
from ._schema import SnapshotError, build_snapshot, compare_snapshots, load_snapshot, message_types

__all__ = ("SNAPSHOT_FILE", "ConsoleModel")

#: The file name looked for beside the services' package when no snapshot path is given.
SNAPSHOT_FILE = "schema.snapshot.json"


class ConsoleModel:
    """What the console shows of ``services`` that does not change while they run.

    Args:
        services: The services the App runs.
        snapshot: The committed schema snapshot to check the running code against; by
            default ``schema.snapshot.json`` beside the top-level package of the services'
            message types, when there is one (``services/schema.snapshot.json`` for the
            reference system). ``False``: no check.
    """

    def __init__(
        self, services: Iterable[Service], *, snapshot: str | Path | bool | None = None
    ) -> None:
        self.services = list(services)
        self._graph: dict[str, Any] | None = None
        self._asyncapi: dict[str, Any] | None = None
        self._configured = isinstance(snapshot, str | Path)
        if snapshot is False:
            self.snapshot: Path | None = None
        elif isinstance(snapshot, str | Path):
            self.snapshot = Path(snapshot)
        else:
            self.snapshot = _beside_package(self.services)
        self._schema: tuple[float, dict[str, Any]] | None = None

    def graph(self) -> dict[str, Any]:
        """Return the system graph: nodes (services, exchanges, queues, sagas) and edges.

        See :func:`actorbus.describe.graph_data` for the shape.
        """
        if self._graph is None:
            self._graph = graph_data(describe_system(self.services))
        return self._graph

    def asyncapi(self) -> dict[str, Any]:
        """Return the AsyncAPI 3.0 document of the services."""
        if self._asyncapi is None:
            self._asyncapi = build_asyncapi(self.services)
        return self._asyncapi

    def schema(self) -> dict[str, Any]:
        """Return whether the running code breaks the snapshot: status, changes, file.

        ``status`` is ``ok`` (no change), ``compatible`` (only additive changes),
        ``breaking``, ``none`` (no snapshot configured or found) or ``error`` (unreadable).
        """
        path = self.snapshot
        base: dict[str, Any] = {
            "snapshot": None if path is None else str(path),
            "configured": self._configured,
            "messages": len(message_types(self.services)),
        }
        if path is None:
            return {
                **base,
                "status": "none",
                "detail": "no schema snapshot is configured and none was found beside the "
                "services' package; write one with `python -m actorbus schema TARGET --output "
                f"{SNAPSHOT_FILE}`",
                "changes": [],
            }
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            return {
                **base,
                "status": "error",
                "detail": f"cannot read {path}: {exc}",
                "changes": [],
            }
        if self._schema is not None and self._schema[0] == mtime:
            return self._schema[1]
        try:
            old = load_snapshot(path.read_text(encoding="utf-8"), str(path))
            changes = compare_snapshots(old, build_snapshot(self.services))
        except (OSError, SnapshotError) as exc:
            return {**base, "status": "error", "detail": str(exc), "changes": []}
        breaking = [c for c in changes if c.breaking]
        result = {
            **base,
            "status": "breaking" if breaking else "compatible" if changes else "ok",
            "detail": (
                f"{len(breaking)} breaking change(s): the running code breaks the snapshot"
                if breaking
                else f"{len(changes)} additive change(s) not in the snapshot yet"
                if changes
                else "the running code matches the snapshot"
            ),
            "changes": [
                {
                    "breaking": c.breaking,
                    "message": c.wire_name,
                    "version": c.version,
                    "type": c.type_name,
                    "field": c.field,
                    "detail": c.detail,
                }
                for c in changes
            ],
        }
        self._schema = (mtime, result)
        return result


def _beside_package(services: list[Service]) -> Path | None:
    """``schema.snapshot.json`` in the directory of the message types' top-level package."""
    for type_ in message_types(services):
        top = sys.modules.get(type_.__module__.partition(".")[0])
        file = getattr(top, "__file__", None)
        if file:
            candidate = Path(file).parent / SNAPSHOT_FILE
            if candidate.is_file():
                return candidate
    return None
