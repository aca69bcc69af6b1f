"""The durable embedded broker: AMQP semantics in one SQLite file, several processes per host.

``sqlite:///relative/path/broker.sqlite3`` or ``sqlite:////absolute/path/broker.sqlite3``.
:class:`SqliteBroker` routes through topic, direct and fanout exchanges and the default
exchange, keeps queues with competing consumers (in this process and in other processes of
the host), bounds unsettled deliveries by prefetch, requeues, retries after a delay, and
dead-letters to ``<queue>.dlq``, exactly as the conformance suite in :mod:`actorbus.testing`
pins for every broker. Unlike ``memory://`` it keeps every message on disk until it is
acknowledged:

- ``publish`` returns once the message is committed (the counterpart of a publisher
  confirm). Concurrent publishes, acks and claims of a connection share one transaction and
  one fsync (group commit).
- A delivery is a *lease* held by the connection that claimed it, never a destructive pop. A
  connection closed cleanly requeues what it held; one whose process died (``kill -9``, a
  crash, the OOM killer) is noticed by the next connection to heartbeat or open: its process
  is gone from this host, so its leases are reclaimed at once; a connection that merely
  stopped heartbeating loses its leases after ``lease`` seconds. Either way the messages come
  back with ``redelivered`` set and the next ``attempt``.
- Exchanges, queues and bindings are rows of the file: a restart finds them again.
- Acked messages are deleted at once, so the file does not grow with traffic.

Query options: ``synchronous=FULL`` (default: the WAL is fsynced at every commit, so a
confirmed publish survives a power loss) or ``NORMAL`` (fsync only at checkpoints: a
confirmed publish survives ``kill -9`` of the process, but the last commits before a power
loss or kernel crash may be lost); ``lease`` (seconds, 10); ``poll`` (seconds, 1: the
backstop for lost wake-up hints); ``busy_timeout`` (milliseconds, 10000); ``max_size_mb``
(a cap on the file); ``acks=async`` (default: ``ack()`` returns at once, the ack is committed
with the next group commit, a crash before it redelivers) or ``confirmed`` (``ack()``
returns once its commit is done). See ``docs/embedded.md``.

Layout: :mod:`._options` (URL, error translation) ← :mod:`._db` (schema and the batches,
blocking, run in a worker thread) ← :mod:`._delivery` ← :mod:`._broker`
(:class:`SqliteBroker`, the writer task); :mod:`._wakeup` sends and receives the
cross-process wake-up hints.
"""

from __future__ import annotations

from ._broker import SqliteBroker as SqliteBroker

__all__ = ("SqliteBroker",)
