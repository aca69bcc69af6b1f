"""Payment serves no HTTP endpoints: payments are only ever driven by the orchestrator."""

from __future__ import annotations

from actorbus import Service

__all__ = ("add_payment_routes",)


def add_payment_routes(service: Service) -> None:
    """Mount Payment's endpoints on ``service``: none, by design."""
