"""What users need to test their own services and brokers: the broker conformance suite."""

from __future__ import annotations

from ._conformance import BrokerConformance as BrokerConformance

__all__ = ("BrokerConformance",)
