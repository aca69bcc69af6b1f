"""``run`` targets for the saga fault tests: the orchestration's participants, Payment apart.

``python -m actorbus run tests.faults._saga_targets:participants`` runs Inventory and
Notification; Payment runs as ``services.payment`` in a process the test starts when it wants
the saga to move past ``ChargePayment``, and the orchestrator as ``services.orchestrator``.
"""

from __future__ import annotations

from actorbus import Service
from services import inventory, notification

__all__ = ("participants",)


def participants() -> list[Service]:
    """Inventory and Notification (what the saga asks besides Payment)."""
    return [inventory.build(), notification.build()]
