"""Where the RabbitMQ of a run comes from: ``--broker URL``, or a throwaway node."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._stats import Progress

__all__ = ("rabbitmq",)


def _node_class() -> type | None:
    # The throwaway node the test suite uses.
    from actorbus.testing import RabbitMQNode
    from actorbus.testing._rabbitmq import find_rabbitmq_server

    if find_rabbitmq_server() is None:
        return None
    node_class: type = RabbitMQNode
    return node_class


@contextlib.contextmanager
def rabbitmq(url: str | None, progress: Progress) -> Iterator[tuple[str | None, str]]:
    """Yield ``(url, how)``: the given URL, a throwaway node's, or ``None`` with the reason.

    Args:
        url: ``--broker``; used as is when given.
        progress: Where progress lines go.
    """
    if url:
        yield url, "given with --broker"
        return
    node_class = _node_class()
    if node_class is None:
        yield None, "rabbitmq-server is not installed: RabbitMQ cases skipped"
        return
    progress("starting a throwaway RabbitMQ node on 127.0.0.1 ...")
    node = node_class(name="actorbus-bench")
    try:
        node.start()
    except Exception as exc:
        node.close()
        yield None, f"the throwaway RabbitMQ node did not start ({exc}): RabbitMQ cases skipped"
        return
    progress(f"RabbitMQ node ready on port {node.port}")
    try:
        yield node.url, f"throwaway node {node.nodename}"
    finally:
        progress("stopping the RabbitMQ node ...")
        node.close()
