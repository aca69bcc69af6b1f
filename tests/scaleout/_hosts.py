"""Processes "on several hosts": separate data directories, one PostgreSQL store, one broker."""

from __future__ import annotations

import uuid
from pathlib import Path

from anyio.abc import TaskGroup

from ..faults._harness import ServicesProcess

__all__ = ("hosts", "shared_store")


def shared_store(postgres_url: str) -> str:
    """A PostgreSQL store of this test alone: a fresh schema in the shared database."""
    separator = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{separator}schema=scaleout_{uuid.uuid4().hex[:10]}"


def hosts(
    tg: TaskGroup, tmp_path: Path, broker: str, store: str, count: int = 2
) -> list[ServicesProcess]:
    """``python -m actorbus run services`` ``count`` times, as on ``count`` hosts.

    Each has a data directory of its own (nothing on disk is shared); every process gets the
    same ``ACTORBUS_STORE`` (the PostgreSQL store) and the same broker.
    """
    env = {"ACTORBUS_STORE": store, "ORDER_FLOW": "choreography"}
    return [
        ServicesProcess(
            tg,
            "services",
            broker=broker,
            data_dir=tmp_path / f"host-{n}" / "data",
            env=env,
            name=f"host-{n}",
        )
        for n in range(1, count + 1)
    ]
