"""The Order orchestrator (orchestration): takes orders and runs a saga for each.

Replaces the Order service when ``ORDER_FLOW=orchestration``: it serves the same
``POST /orders`` and ``GET /orders/{orderId}``, and runs :func:`~.saga.order_saga`
(ReserveStock → ChargePayment → SendConfirmation, compensating with ReleaseStock, and
RefundPayment after a payment timeout). Orders and saga instances live in the App's store, so
a saga survives a restart and finishes.

Settings (environment): ``ORDER_STEP_TIMEOUT`` seconds to wait for a reply (default 10),
``ORDER_STEP_ATTEMPTS`` attempts of a step before compensating (default 3).

``python -m actorbus run services.orchestrator`` runs it alone.
"""

from __future__ import annotations

import os

from actorbus import Service
from actorbus.exceptions import ConfigurationError

from ..common.frontdoor import announce_front_door
from ..common.state import migrate_on_start
from ..contracts import EXCHANGE
from ..order.store import ORDER_STEPS
from .http import add_order_routes
from .saga import order_saga

__all__ = ("build", "service")

DEFAULT_STEP_TIMEOUT = 10.0
DEFAULT_STEP_ATTEMPTS = 3


def _setting(name: str, default: float, minimum: float) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= minimum:
        raise ConfigurationError(f"{name}={text!r} is invalid: expected a number >= {minimum:g}")
    return value


def build(step_timeout: float | None = None, max_attempts: int | None = None) -> Service:
    """Return a new Order orchestrator (durable: it needs an App with a store).

    Args:
        step_timeout: Seconds to wait for each reply; ``ORDER_STEP_TIMEOUT`` or 10 by default.
        max_attempts: Attempts of ReserveStock/ChargePayment before compensating;
            ``ORDER_STEP_ATTEMPTS`` or 3 by default.

    Raises:
        ConfigurationError: A setting is not a positive number.
    """
    timeout = (
        step_timeout
        if step_timeout is not None
        else _setting("ORDER_STEP_TIMEOUT", DEFAULT_STEP_TIMEOUT, 0.01)
    )
    attempts = (
        max_attempts
        if max_attempts is not None
        else int(_setting("ORDER_STEP_ATTEMPTS", DEFAULT_STEP_ATTEMPTS, 1))
    )
    if timeout <= 0 or attempts < 1:
        raise ConfigurationError(
            f"orchestrator: step_timeout must be > 0 and max_attempts >= 1, "
            f"got {timeout!r} and {attempts!r}"
        )

    service = Service("orchestrator", queue="orchestrator.queue", exchange=EXCHANGE, durable=True)
    # The same orders table as the Order service's (a data directory may switch flows).
    migrate_on_start(service, ORDER_STEPS, namespace="order")
    saga = order_saga(timeout, attempts)
    saga.attach(service)
    add_order_routes(service, saga)
    service.background(announce_front_door)
    return service


#: The Order orchestrator, for ``python -m actorbus run services.orchestrator``.
service = build()
