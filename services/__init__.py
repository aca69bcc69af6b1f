"""The reference system: an order flow on actorbus, run by ``python -m actorbus run services``.

:func:`services` returns the services of the flow chosen by ``ORDER_FLOW``:

* ``choreography`` (default): Order publishes ``order.created``; Inventory, Notification,
  Shipping and Order react to each other's events (Payment idles: nobody charges).
* ``orchestration``: the Order orchestrator runs a saga of commands to Inventory, Payment and
  Notification (Shipping idles: nobody publishes ``stock.reserved``).

Each ``services.<name>`` package also runs alone: ``python -m actorbus run services.inventory``.
"""

from __future__ import annotations

import os
from typing import Final

from actorbus import Service
from actorbus.exceptions import ConfigurationError

from . import inventory, notification, orchestrator, order, payment, shipping

__all__ = ("CHOREOGRAPHY", "FLOWS", "ORCHESTRATION", "services")

CHOREOGRAPHY: Final = "choreography"
ORCHESTRATION: Final = "orchestration"
FLOWS: Final = (CHOREOGRAPHY, ORCHESTRATION)


def services(flow: str | None = None, *, step_timeout: float | None = None) -> list[Service]:
    """Return new Service objects for ``flow`` (``ORDER_FLOW``, else choreography).

    New objects on every call: each App gets services of its own (they hold its stores).

    Args:
        flow: ``"choreography"`` or ``"orchestration"``; ``ORDER_FLOW`` when ``None``.
        step_timeout: The orchestrator's reply timeout in seconds (``ORDER_STEP_TIMEOUT``).

    Raises:
        ConfigurationError: The flow is neither of the two.
    """
    chosen = (flow or os.environ.get("ORDER_FLOW") or CHOREOGRAPHY).strip().lower()
    common = [inventory.build(), notification.build(), shipping.build(), payment.build()]
    if chosen == CHOREOGRAPHY:
        return [order.build(), *common]
    if chosen == ORCHESTRATION:
        return [orchestrator.build(step_timeout=step_timeout), *common]
    raise ConfigurationError(
        f"ORDER_FLOW={chosen!r} is unknown: use {CHOREOGRAPHY!r} (the default) or {ORCHESTRATION!r}"
    )
