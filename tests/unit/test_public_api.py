"""The public surface and the layer rules of DESIGN.md §2, checked on the source."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import actorbus

ROOT = Path(actorbus.__file__).parent
REPO = ROOT.parent

# layer -> layers it must never import
FORBIDDEN = {
    "runtime": {"brokers", "messages", "app", "cli", "testing"},
    "brokers": {"runtime", "app", "cli"},
    "messages": {"brokers", "runtime", "app", "cli", "testing"},
    "app": {"cli", "testing"},
    "testing": {"cli"},
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
    in_amqp = package.startswith("actorbus.brokers.amqp")
    for native in ("asyncio", "aiormq", "pamqp"):
        if not in_amqp:
            bad = sorted(m for m in imported if m == native or m.startswith(f"{native}."))
            assert not bad, f"{path.relative_to(REPO)} imports {native} outside brokers/amqp"


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
