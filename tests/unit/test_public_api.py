"""The public surface and the layer rules of docs/architecture.md, checked on the source.

Run ``pytest tests/unit/test_public_api.py -k "layering or circle or inside_functions"`` to
see the import rules hold: layers point down, client libraries stay in their transport or
store package, no package reaches into another's private modules, no import circle (counting
``TYPE_CHECKING`` imports), and no import hidden inside a function except of an optional
dependency.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import actorbus

ROOT = Path(actorbus.__file__).parent
REPO = ROOT.parent

_ABOVE_BROKERS = {"runtime", "stores", "app", "observe", "describe", "cli", "testing"}

# layer -> layers it must never import (docs/architecture.md, "The layers")
FORBIDDEN = {
    "messages": {"brokers", *_ABOVE_BROKERS},
    "brokers": _ABOVE_BROKERS,
    "runtime": {"messages", "brokers", *_ABOVE_BROKERS} - {"runtime"},
    "stores": _ABOVE_BROKERS - {"stores"} | {"brokers"},
    "observe": {"stores", "app", "describe", "cli", "testing"},
    "app": {"describe", "cli", "testing"},
    "describe": {"cli", "testing"},
    "testing": {"cli"},
}

# client library -> the only packages that may import it
NATIVE = {
    "aiormq": ("actorbus.brokers.amqp",),
    "pamqp": ("actorbus.brokers.amqp",),
    "asyncio": ("actorbus.brokers.amqp", "actorbus.brokers.nats"),
    "nats": ("actorbus.brokers.nats",),
    "asyncpg": ("actorbus.stores",),
    "psycopg": ("actorbus.stores",),
    "sqlite3": ("actorbus.stores", "actorbus.brokers.sqlite"),
    "uvicorn": ("actorbus.observe",),
    "prometheus_client": ("actorbus.observe",),
}

# Imports placed inside functions are allowed only for modules that need an optional
# dependency (so that the core imports without it), never to dodge an import circle.
LAZY_OPTIONAL = {
    "actorbus.observe": "prometheus-client, uvicorn (its lazily loaded names)",
    "actorbus.app._front_door": "starlette (the http extra)",
    "actorbus.testing._conformance": "pytest",
    "actorbus.testing._store_conformance": "pytest",
}


def _modules() -> list[str]:
    names = ["actorbus"]
    for info in pkgutil.walk_packages([str(ROOT)], prefix="actorbus."):
        names.append(info.name)
    return names


def _public_modules() -> list[str]:
    return [n for n in _modules() if not any(p.startswith("_") for p in n.split(".")[1:])]


def _imports(path: Path, package: str) -> set[str]:
    """Every absolute module name imported by ``path`` (TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _source_files() -> list[tuple[Path, str]]:
    files = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        package = ".".join(parts if parts[-1] == "__init__" else parts[:-1])
        if parts[-1] == "__init__":
            package = ".".join(parts[:-1])
        files.append((path, package))
    return files


@pytest.mark.parametrize("name", _public_modules())
def test_public_modules_have_a_tuple_all_that_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, tuple), f"{name}.__all__ must be a tuple"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


def test_top_level_api_is_small_and_documented() -> None:
    assert 15 <= len(actorbus.__all__) <= 30
    for name in actorbus.__all__:
        obj = getattr(actorbus, name)
        assert obj.__doc__, f"actorbus.{name} has no docstring"


@pytest.mark.parametrize(("path", "package"), _source_files(), ids=lambda v: str(v))
def test_layering(path: Path, package: str) -> None:
    parts = package.split(".")
    layer = parts[1] if len(parts) > 1 else None
    imported = _imports(path, package)
    for forbidden in FORBIDDEN.get(layer or "", set()):
        bad = sorted(m for m in imported if m.startswith(f"actorbus.{forbidden}"))
        assert not bad, f"{path.relative_to(REPO)} ({layer}) imports {bad}"
    if layer != "cli" and path.name != "__main__.py":
        bad = sorted(m for m in imported if m.startswith("actorbus.cli"))
        assert not bad, f"{path.relative_to(REPO)} imports the CLI: {bad}"
    for native, homes in NATIVE.items():
        if package.startswith(homes):
            continue
        bad = sorted(m for m in imported if m == native or m.startswith(f"{native}."))
        assert not bad, f"{path.relative_to(REPO)} imports {native} outside {homes}"
    for module in imported:
        if not module.startswith("actorbus."):
            continue
        parts = module.split(".")
        for i, part in enumerate(parts[1:], start=1):
            owner = ".".join(parts[:i])  # the package the private module belongs to
            if part.startswith("_") and not part.startswith("__"):
                inside = package == owner or package.startswith(owner + ".")
                assert inside, (
                    f"{path.relative_to(REPO)} imports {module}: a private module of {owner}; "
                    f"import it through {owner}'s __init__"
                )
                break


def test_services_use_only_the_public_api() -> None:
    services = REPO / "services"
    if not services.exists():
        pytest.skip("no services package")
    for path in services.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        package = ".".join(rel.parts[:-1])
        for module in _imports(path, package):
            if module.startswith("actorbus"):
                parts = module.split(".")
                assert not any(p.startswith("_") for p in parts), (
                    f"{path.relative_to(REPO)} imports private {module}"
                )


def _module_graph() -> dict[str, set[str]]:
    """Module -> the actorbus modules it imports (anywhere in it, TYPE_CHECKING included)."""
    names = {}
    for path, package in _source_files():
        rel = path.relative_to(REPO).with_suffix("").parts
        names[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = (path, package)
    graph: dict[str, set[str]] = {}
    for name, (path, package) in names.items():
        # a package's __init__ importing its own submodules is how it re-exports them
        graph[name] = {
            m
            for m in _imports(path, package)
            if m in names and m != name and not m.startswith(name + ".")
        }
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    circles = _circles(_module_graph())
    assert not circles, "import circles (TYPE_CHECKING imports count): " + "; ".join(
        " <-> ".join(group) for group in circles
    )


def test_the_circle_check_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("path", "package"), _source_files(), ids=lambda v: str(v))
def test_imports_inside_functions_are_only_of_optional_dependencies(
    path: Path, package: str
) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
            else:
                module = node.names[0].name
            if module.startswith("actorbus"):
                assert module in LAZY_OPTIONAL, (
                    f"{path.relative_to(REPO)}:{node.lineno} imports {module} inside "
                    f"{func.name}(): move it to the top (an import circle is fixed by the "
                    "layout, not by hiding the import)"
                )
