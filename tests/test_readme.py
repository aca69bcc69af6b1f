"""Every Python sample in the README runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

pytestmark = pytest.mark.anyio


def _exec(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)  # samples may create ./.actorbus
    namespace: dict[str, Any] = {"__name__": "readme_sample"}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


def test_the_readme_has_samples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_sample_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block = BLOCKS[index]
    # Samples build on the ones before them, as in a reader's session.
    namespace = _exec("\n".join(BLOCKS[: index + 1]), tmp_path, monkeypatch)
    if "def main" in block:
        await namespace["main"]()
    elif "def lifespan" in block:
        web = namespace["web"]
        async with namespace["lifespan"](web):
            assert web.state.bus.is_ready
        assert not web.state.bus.is_ready
    else:
        pytest.fail(f"README sample {index} has neither main() nor lifespan() to run")
