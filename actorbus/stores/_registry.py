"""Store URL scheme → store class: built-ins by module path (imported lazily), third parties
through the ``actorbus.stores`` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ..exceptions import StoreImportError, UnknownStoreError
from ._protocol import Store
from ._url import redact, scheme_of

__all__ = ("ENTRY_POINT_GROUP", "open_store")

ENTRY_POINT_GROUP = "actorbus.stores"

_BUILTIN = {
    "sqlite": ("actorbus.stores.sqlite:SqliteStore", ""),
    "postgresql": (
        "actorbus.stores.postgresql:PostgresStore",
        "install the driver with: pip install 'actorbus[postgres]'",
    ),
    "postgres": (
        "actorbus.stores.postgresql:PostgresStore",
        "install the driver with: pip install 'actorbus[postgres]'",
    ),
}


def _load(scheme: str, target: str, hint: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise StoreImportError(scheme, target, str(exc), hint) from exc


def open_store(url: str, **options: Any) -> Store:
    """Return the (not yet opened) store for ``url``; open it with ``async with``.

    Args:
        url: ``sqlite:///path/file.sqlite3`` or ``postgresql://user:pass@host:port/db``, or a
            scheme registered under the ``actorbus.stores`` entry-point group. The entry point
            names a callable ``(url, **options) -> Store``.
        **options: Passed to the store (``max_batch``, ``inbox_window``, ``sent_window``, …).

    Returns:
        The store; nothing is connected until ``async with store:``.

    Raises:
        UnknownStoreError: No store is registered for the URL's scheme.
        StoreImportError: The store's module (or its driver) cannot be imported.
        ConfigurationError: The URL or an option is invalid.
    """
    scheme = scheme_of(url)
    builtin = _BUILTIN.get(scheme)
    if builtin is not None:
        factory = _load(scheme, *builtin)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
        if not found:
            known = set(_BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
            raise UnknownStoreError(scheme or redact(url), known)
        try:
            factory = found[0].load()
        except ImportError as exc:
            raise StoreImportError(scheme, found[0].value, str(exc)) from exc
    store: Store = factory(url, **options)
    return store
