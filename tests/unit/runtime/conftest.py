"""Run every runtime test on asyncio and on trio: the runtime must not depend on asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Override the suite-wide asyncio-only backend for the runtime tests."""
    return str(request.param)
