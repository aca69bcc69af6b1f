"""Fixtures of the NATS tests."""

from __future__ import annotations

from ._fixtures import nats_url as nats_url
