"""Fixtures of the scale-out tests: a RabbitMQ node of their own, a fresh vhost per test."""

from __future__ import annotations

from ..faults._fixtures import fault_node, vhost_url

__all__ = ("fault_node", "vhost_url")
