"""What every command shares: exit codes, environment fallbacks, the broker and log options."""

from __future__ import annotations

import argparse
import os

__all__ = (
    "DEFAULT_BROKER",
    "DEFAULT_DATA_DIR",
    "DEFAULT_HTTP",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_broker_option",
    "add_log_options",
    "add_store_option",
    "env",
)

#: Exit codes of every command.
EXIT_OK = 0
"""Done; for ``run``, a clean stop after SIGINT/SIGTERM."""
EXIT_FAILED = 1
"""A supervisor gave up, the broker or a queue was unreachable, or ``schema --check`` found a
breaking change."""
EXIT_USAGE = 2
"""The command line or a target was wrong."""

DEFAULT_BROKER = "memory://"
DEFAULT_HTTP = "127.0.0.1:8000"
DEFAULT_DATA_DIR = ".actorbus"


def env(name: str, default: str) -> str:
    """Return the environment variable ``name`` if set and not empty, else ``default``."""
    return os.environ.get(name) or default


def add_broker_option(parser: argparse.ArgumentParser, default: str = DEFAULT_BROKER) -> None:
    """Add ``--broker URL`` (fallback: ``ACTORBUS_BROKER``)."""
    parser.add_argument(
        "--broker",
        metavar="URL",
        default=env("ACTORBUS_BROKER", default),
        help="broker URL: memory:// (in-process), amqp://user:pass@host:5672/vhost or amqps://…"
        f" (env ACTORBUS_BROKER; default {default})",
    )


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
    """Add ``--store URL`` (fallback: ``ACTORBUS_STORE``; default: no store)."""
    parser.add_argument(
        "--store",
        metavar="URL",
        default=env("ACTORBUS_STORE", ""),
        help="the services' store: sqlite:///path/file.sqlite3 or "
        "postgresql://user:pass@host:5432/db; makes every service durable (inbox, "
        "transactional outbox, group commit) (env ACTORBUS_STORE; default: none)",
    )
