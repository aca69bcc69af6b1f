"""Durable state for services: inbox, transactional outbox and the service's own tables,
committed together with group commit, on SQLite (embedded) or PostgreSQL (shared).

The layer knows nothing of actors, brokers or the pipeline; it stores envelopes and bytes.

Use::

    from actorbus.stores import open_store

    async with open_store("sqlite:///data/inventory.sqlite3") as store:
        await store.migrate("inventory", [
            "CREATE TABLE stock (sku TEXT PRIMARY KEY, available INTEGER NOT NULL)",
        ])
        async with store.transaction() as tx:
            if await tx.inbox.claim("inventory", event_id):
                await tx.execute("UPDATE stock SET available = available - ? WHERE sku = ?",
                                 qty, sku)
                await tx.outbox.add("orders.topic", envelope, body)

How the message pipeline uses it (one delivery = one unit; deliveries handled in order by one
consumer share COMMITs without waiting for each fsync):

1. Key: the payload's ``eventId``; if absent, the transport message id; if neither, dead-letter
   the delivery ("no identity") and do not open a transaction. Never an empty or random key.
2. ``async with store.transaction(wait=False) as tx:`` then ``tx.inbox.claim(queue, key)``;
   ``False`` means a duplicate: run nothing, ack. Otherwise run the handler with ``tx``; its
   publishes go to ``tx.outbox.add``. A handler error propagates out of the block: only this
   delivery's unit is rolled back; retry or dead-letter it as usual.
3. Before acking a delivery, ``await tx.wait_committed()`` (for many deliveries: await them all,
   then ack with ``multiple``). ``StoreUnavailableError`` there means the outcome is unknown:
   do not ack (nack with requeue); the inbox recognises the redelivery if it did commit.
4. A relay task publishes the outbox: ``rows = await store.outbox.claim(owner, 100, lease)``,
   publish them in order with confirms, ``mark_sent`` the confirmed ones, ``release`` the
   others (with a ``delay``), and ``await store.outbox.wait(timeout=poll)`` when nothing is left.
5. ``run_pruner(store)`` in the app's task group; ``store.ping()`` in the readiness probe.

An HTTP endpoint does the same with ``await store.run(fn)`` (re-run on conflicts) or
``async with store.transaction() as tx`` (waits for its COMMIT).
"""

from __future__ import annotations

from ._protocol import DEFAULT_INBOX_WINDOW as DEFAULT_INBOX_WINDOW
from ._protocol import DEFAULT_SENT_WINDOW as DEFAULT_SENT_WINDOW
from ._protocol import MigrationStep as MigrationStep
from ._protocol import OutboxRelay as OutboxRelay
from ._protocol import OutboxRow as OutboxRow
from ._protocol import PruneResult as PruneResult
from ._protocol import Row as Row
from ._protocol import Store as Store
from ._protocol import StoreStats as StoreStats
from ._protocol import Transaction as Transaction
from ._protocol import TxInbox as TxInbox
from ._protocol import TxOutbox as TxOutbox
from ._pruner import run_pruner as run_pruner
from ._registry import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from ._registry import open_store as open_store
from ._url import redact as redact

__all__ = (
    "DEFAULT_INBOX_WINDOW",
    "DEFAULT_SENT_WINDOW",
    "ENTRY_POINT_GROUP",
    "MigrationStep",
    "OutboxRelay",
    "OutboxRow",
    "PruneResult",
    "Row",
    "Store",
    "StoreStats",
    "Transaction",
    "TxInbox",
    "TxOutbox",
    "open_store",
    "redact",
    "run_pruner",
)
