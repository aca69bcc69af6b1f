"""Resolve a ``run`` target (``services``, ``services.inventory``, ``pkg.mod:attr``)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..app import Service
from ..exceptions import ConfigurationError

__all__ = ("TargetError", "resolve_services")


class TargetError(ConfigurationError):
    """A ``run`` target cannot be resolved to services."""


def _candidates(module_name: str) -> list[str]:
    parent, _, _ = module_name.rpartition(".")
    if parent:
        try:
            package = importlib.import_module(parent)
        except ImportError:
            return []
        paths = getattr(package, "__path__", None)
        if paths is None:
            return []
        return [f"{parent}.{m.name}" for m in pkgutil.iter_modules(paths)]
    return [m.name for m in pkgutil.iter_modules([str(Path.cwd()), *sys.path[1:2]])]


def _import(module_name: str) -> Any:
    if str(Path.cwd()) not in sys.path and "" not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            close = difflib.get_close_matches(module_name, _candidates(module_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if not close and module_name.partition(".")[0] == "services":
                hint = (
                    f" in {Path.cwd()} (nor on sys.path); the reference system lives in the "
                    "'services' folder at the root of the actorbus repository: run "
                    "'python -m actorbus run services' from that folder, or name your own "
                    "package or module"
                )
            raise TargetError(f"module {module_name!r} not found{hint}") from exc
        raise TargetError(
            f"module {module_name!r} failed to import: {exc} (a dependency is missing)"
        ) from exc


def _as_services(value: Any, where: str) -> list[Service]:
    if isinstance(value, Service):
        return [value]
    if callable(value) and not isinstance(value, type):
        return _as_services(value(), where)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = list(value)
        bad = [item for item in items if not isinstance(item, Service)]
        if not bad and items:
            return items
        if bad:
            raise TargetError(f"{where} holds {bad[0]!r}, which is not an actorbus Service")
    raise TargetError(
        f"{where} is {type(value).__name__}, not a Service, a list of Services, "
        "or a function returning them"
    )


def resolve_services(target: str) -> list[Service]:
    """Import ``target`` and return its services.

    A module or package gives its ``services`` attribute (a list of Services, or a function
    returning one), else its ``service`` attribute. ``module:attr`` names the attribute.

    Raises:
        TargetError: The module is missing (with a close match, if any), or holds no services.
    """
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise TargetError(f"invalid target {target!r}: expected MODULE or MODULE:ATTRIBUTE")
    module = _import(module_name)
    if attr:
        if not hasattr(module, attr):
            names = [n for n in vars(module) if not n.startswith("_")]
            close = difflib.get_close_matches(attr, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TargetError(f"module {module_name!r} has no attribute {attr!r}{hint}")
        return _as_services(getattr(module, attr), target)
    for name in ("services", "service"):
        if hasattr(module, name):
            return _as_services(getattr(module, name), f"{module_name}.{name}")
    raise TargetError(
        f"module {module_name!r} defines neither 'services' nor 'service'; "
        f"name the attribute as {module_name}:ATTRIBUTE"
    )
