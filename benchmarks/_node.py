"""Where the brokers of a run come from: ``--broker`` / ``--nats URL``, or throwaway ones."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator

from ._stats import Progress

__all__ = ("nats_server", "rabbitmq")


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


@contextlib.contextmanager
def nats_server(url: str | None, progress: Progress) -> Iterator[tuple[str | None, str]]:
    """Yield ``(url, how)``: the given URL, a throwaway ``nats-server -js``, or ``None`` and why.

    Args:
        url: ``--nats``; used as is when given.
        progress: Where progress lines go.
    """
    if importlib.util.find_spec("nats") is None:
        yield None, "nats-py is not installed (pip install 'actorbus[nats]'): NATS cases skipped"
        return
    if url:
        yield url, "given with --nats"
        return
    from actorbus.testing import NatsServer
    from actorbus.testing._nats import find_nats_server

    if find_nats_server() is None:
        yield None, "nats-server is not installed: NATS cases skipped"
        return
    progress("starting a throwaway nats-server -js on 127.0.0.1 ...")
    server: NatsServer | None = None
    try:
        server = NatsServer(name="actorbus-bench")
        server.start()
    except Exception as exc:
        if server is not None:
            server.close()
        yield None, f"the throwaway nats-server did not start ({exc}): NATS cases skipped"
        return
    progress(f"nats-server ready on {server.url}")
    try:
        yield server.url, "throwaway nats-server"
    finally:
        progress("stopping the nats-server ...")
        server.close()
