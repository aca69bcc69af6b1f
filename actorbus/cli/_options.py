"""What every command shares: exit codes, environment fallbacks, the broker and log options."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = (
    "DEFAULT_BROKER_FILE",
    "DEFAULT_DATA_DIR",
    "DEFAULT_HTTP",
    "DEFAULT_STORE_FILE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_broker_option",
    "add_log_options",
    "add_store_option",
    "env",
    "resolve_broker",
    "resolve_store",
)

#: Exit codes of every command.
EXIT_OK = 0
"""Done; for ``run``, a clean stop after SIGINT/SIGTERM."""
EXIT_FAILED = 1
"""A supervisor gave up, the broker or a queue was unreachable, or ``schema --check`` found a
breaking change."""
EXIT_USAGE = 2
"""The command line or a target was wrong."""

#: The broker file under the data directory when no ``--broker`` is given to ``run``.
DEFAULT_BROKER_FILE = "broker.sqlite3"
DEFAULT_HTTP = "127.0.0.1:8000"
DEFAULT_DATA_DIR = ".actorbus"
#: The store's file under the data directory when no ``--store`` is given.
DEFAULT_STORE_FILE = "store.sqlite3"
#: ``--store`` values that mean "no store" (the in-memory path; nothing on disk).
NO_STORE = ("none", "off")


def env(name: str, default: str) -> str:
    """Return the environment variable ``name`` if set and not empty, else ``default``."""
    return os.environ.get(name) or default


def add_broker_option(
    parser: argparse.ArgumentParser, default: str = "", *, in_process: bool = True
) -> None:
    """Add ``--broker URL`` (fallback: ``ACTORBUS_BROKER``).

    Args:
        parser: The command's parser.
        default: The URL when neither is given; ``""`` means the embedded broker under the
            data directory (``run``; see :func:`resolve_broker`).
        in_process: Whether the command can use ``memory://`` (a broker inside its own
            process); commands that operate on another process's broker cannot.
    """
    shown = default or f"sqlite:///DATA_DIR/{DEFAULT_BROKER_FILE}, durable, on this host"
    memory = ", memory:// (in one process, nothing on disk)" if in_process else ""
    parser.add_argument(
        "--broker",
        metavar="URL",
        default=env("ACTORBUS_BROKER", default),
        help="broker URL: sqlite:///path/broker.sqlite3 (embedded, durable, shared by the "
        "processes of one host), amqp://user:pass@host:5672/vhost or amqps://… (RabbitMQ)"
        f"{memory} (env ACTORBUS_BROKER; default {shown})",
    )


def resolve_broker(broker: str, data_dir: Path) -> str:
    """Return the broker URL ``run`` uses: ``broker``, else the embedded one under ``data_dir``.

    Args:
        broker: ``--broker`` / ``ACTORBUS_BROKER`` (``""`` when neither was given).
        data_dir: ``--data-dir``: the default broker is ``DATA_DIR/broker.sqlite3``.
    """
    chosen = broker.strip()
    if chosen:
        return chosen
    # sqlite:/// + a relative path, or sqlite://// + an absolute one (see docs/embedded.md).
    return f"sqlite:///{(data_dir / DEFAULT_BROKER_FILE).as_posix()}"


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format`` (env ``ACTORBUS_LOG_LEVEL``, ``…_LOG_FORMAT``)."""
    parser.add_argument(
        "--log-level",
        default=env("ACTORBUS_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown (env ACTORBUS_LOG_LEVEL; default info)",
    )
    parser.add_argument(
        "--log-format",
        default=env("ACTORBUS_LOG_FORMAT", "auto"),
        choices=["auto", "console", "json"],
        help="console on a terminal, JSON lines otherwise (env ACTORBUS_LOG_FORMAT; default auto)",
    )


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--store URL`` (fallback: ``ACTORBUS_STORE``; default: SQLite under the data dir).

    The parsed value is ``""`` when neither is given; :func:`resolve_store` turns it into
    the default once the data directory is known.
    """
    parser.add_argument(
        "--store",
        metavar="URL",
        default=env("ACTORBUS_STORE", ""),
        help="the services' store: sqlite:///path/file.sqlite3 or "
        "postgresql://user:pass@host:5432/db, shared by every process of a service; makes "
        "every service durable (inbox, transactional outbox, group commit); 'none' for no "
        f"store (env ACTORBUS_STORE; default sqlite:///DATA_DIR/{DEFAULT_STORE_FILE})",
    )


def resolve_store(store: str, data_dir: Path) -> str | None:
    """Return the store URL ``run`` uses: ``store``, else SQLite under ``data_dir``.

    Args:
        store: ``--store`` / ``ACTORBUS_STORE`` (``""`` when neither was given; ``"none"``
            or ``"off"`` for no store).
        data_dir: ``--data-dir``: the default store is ``DATA_DIR/store.sqlite3``.

    Returns:
        The URL, or ``None`` for no store.
    """
    chosen = store.strip()
    if chosen.lower() in NO_STORE:
        return None
    if chosen:
        return chosen
    # sqlite:/// + a relative path, or sqlite://// + an absolute one (see docs/stores.md).
    return f"sqlite:///{(data_dir / DEFAULT_STORE_FILE).as_posix()}"
