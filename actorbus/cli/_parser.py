"""The subcommand tree. Every option has help text and an ``ACTORBUS_*`` environment fallback."""

from __future__ import annotations

import argparse
import os
import textwrap

__all__ = ("build_parser",)

DEFAULT_BROKER = "memory://"
DEFAULT_HTTP = "127.0.0.1:8000"
DEFAULT_DATA_DIR = ".actorbus"


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def add_broker_option(parser: argparse.ArgumentParser, default: str = DEFAULT_BROKER) -> None:
    """Add ``--broker URL`` (fallback: ``ACTORBUS_BROKER``)."""
    parser.add_argument(
        "--broker",
        metavar="URL",
        default=_env("ACTORBUS_BROKER", default),
        help="broker URL: memory:// (in-process), amqp://user:pass@host:5672/vhost or amqps://…"
        f" (env ACTORBUS_BROKER; default {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the ``actorbus`` argument parser with all of its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m actorbus",
        description=textwrap.dedent(
            """\
            actorbus: supervised actors consuming from message brokers.

            Commands:
              run TARGET       run the services of a package or module until SIGINT/SIGTERM
              asyncapi TARGET  write the AsyncAPI 3.0 document of the services
              graph TARGET     draw services, exchanges and queues (Mermaid or DOT)
              schema TARGET    write the messages' JSON Schema snapshot, or --check one
              dlq ACTION QUEUE list, show, replay or purge a queue's dead letters
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default=_env("ACTORBUS_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown (env ACTORBUS_LOG_LEVEL; default info)",
    )
    parser.add_argument(
        "--log-format",
        default=_env("ACTORBUS_LOG_FORMAT", "auto"),
        choices=["auto", "console", "json"],
        help="console on a terminal, JSON lines otherwise (env ACTORBUS_LOG_FORMAT; default auto)",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    # Imported here: the command modules import the option helpers above.
    from ._asyncapi import add_asyncapi_command
    from ._dlq import add_dlq_command
    from ._graph import add_graph_command
    from ._run import add_run_command
    from ._schema import add_schema_command

    add_run_command(sub)
    add_asyncapi_command(sub)
    add_graph_command(sub)
    add_schema_command(sub)
    add_dlq_command(sub)
    return parser
