"""Fixtures of the fault suite: a RabbitMQ node of its own, a fresh vhost per case."""

from __future__ import annotations

from ._fixtures import fault_node, vhost_url

__all__ = ("fault_node", "vhost_url")
