"""Fixtures of the scale-out tests: a RabbitMQ node of their own, a fresh vhost per test, and
the session's throwaway PostgreSQL cluster (for processes that share one store)."""

from __future__ import annotations

from ..faults._fixtures import fault_node, vhost_url
from ..stores._postgres_fixture import postgres_url

__all__ = ("fault_node", "postgres_url", "vhost_url")
