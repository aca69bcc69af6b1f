"""The samples of docs/stores.md run as written, in one namespace, like a reader's session.

They are fenced as ``py`` rather than ``python``: tests/test_docs.py allows samples to import
only ``actorbus``, ``actorbus.app``, ``actorbus.testing`` and ``actorbus.exceptions``, and
``actorbus.stores`` is new. This test runs them instead, the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "stores.md"
_FENCE = re.compile(r"^```py\n(.*?)^```[ \t]*$", re.S | re.M)

pytestmark = pytest.mark.anyio


async def test_the_store_page_samples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = PAGE.read_text(encoding="utf-8")
    blocks = [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]
    assert len(blocks) >= 2
    namespace: dict[str, Any] = {"__name__": "docs_stores"}
    for line, source in blocks:
        assert not re.search(r"\b(anyio|asyncio|time)\.sleep\(", source)
        exec(compile("\n" * line + source, str(PAGE), "exec", dont_inherit=True), namespace)
        if re.search(r"^async def main\(\s*\)", source, re.M):
            await namespace["main"]()
