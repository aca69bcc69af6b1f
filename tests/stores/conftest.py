"""Fixtures of the store tests: the session's throwaway PostgreSQL cluster."""

from __future__ import annotations

from ._postgres_fixture import postgres_url as postgres_url

__all__ = ("postgres_url",)
