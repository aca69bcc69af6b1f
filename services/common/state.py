"""How a reference service keeps its tables in the App's store.

Every service here is durable (``Service(durable=True)``): its handlers run in the store
transaction that also holds the inbox record of the delivery and the outbox rows of what they
publish (``ctx.tx``), and its endpoints write through ``ctx.transaction()``. An App without a
store refuses to start them, naming the fix (``App(store=…)`` / ``--store``).

Tables are versioned migrations per service (``store.migrate(<service>, steps)``): append
steps, never edit released ones. SQL is written for both SQLite and PostgreSQL (``?``
placeholders, ``TEXT``, ``INTEGER``, ``DOUBLE PRECISION``, ``ON CONFLICT``).
"""

from __future__ import annotations

from collections.abc import Sequence

from actorbus import Service, ServiceContext
from actorbus.exceptions import ConfigurationError
from actorbus.stores import MigrationStep, Store

__all__ = ("app_store", "migrate_on_start")


def app_store(ctx: ServiceContext) -> Store:
    """Return the App's store (what the service's endpoints and start-up hooks use).

    Raises:
        ConfigurationError: The App has no store (only possible for a service built with
            ``durable=False``, which these services never are).
    """
    store = ctx.store
    if store is None:
        raise ConfigurationError(
            f"service {ctx.service.name!r} keeps its state in the App's store, and the App has "
            "none: run it with App(..., store='sqlite:///data/app.sqlite3') or --store URL"
        )
    return store


def migrate_on_start(
    service: Service, steps: Sequence[MigrationStep], namespace: str | None = None
) -> None:
    """Bring ``service``'s tables up to date when the App starts.

    Args:
        service: The service whose start-up migrates.
        steps: The migration steps, oldest first.
        namespace: Whose tables they are; the service's name by default.
    """
    owner = service.name if namespace is None else namespace

    async def migrate(ctx: ServiceContext) -> None:
        await app_store(ctx).migrate(owner, steps)

    service.startup(migrate)
