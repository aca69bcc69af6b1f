"""Logger helper for library modules. Never configures structlog (only the CLI does)."""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ("get_logger",)


def get_logger(name: str, **initial: Any) -> Any:
    """Return a structlog logger named ``name`` (e.g. ``"actorbus.runtime"``).

    Event names are snake_case facts (``"actor_restarted"``) with key-value fields.
    """
    return structlog.get_logger(name, **initial)
