"""``graph TARGET``: draw a system's services, exchanges and queues (Mermaid or DOT)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, get_args

from .._log import get_logger
from ..describe import GraphFormat, render_graph
from ..exceptions import ConfigurationError
from ._imports import resolve_services
from ._logging import configure_logging
from ._options import EXIT_OK, EXIT_USAGE, env

__all__ = ("add_graph_command", "graph_command")

_log = get_logger("actorbus.cli")


_FORMATS: tuple[GraphFormat, ...] = get_args(GraphFormat)


def add_graph_command(sub: Any) -> None:
    """Add the ``graph`` subcommand to the parser's subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "graph",
        help="draw the services, exchanges and queues (Mermaid or Graphviz DOT)",
        description=(
            "Print TARGET's services as a flowchart: services publish to exchanges, exchanges "
            "route by routing key to queues, queues feed services. Events are solid arrows, "
            "commands and replies dashed. Nothing connects to a broker. Exits 0, or 2 on a "
            "usage error."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="package, module, or module:attribute")
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        default=env("ACTORBUS_GRAPH_FORMAT", "mermaid"),
        help=f"{' or '.join(_FORMATS)} (env ACTORBUS_GRAPH_FORMAT; default mermaid)",
    )
    parser.set_defaults(handler=graph_command)


def graph_command(args: argparse.Namespace) -> int:
    """Print the graph of ``args.target``; return the process exit code."""
    configure_logging(args.log_level, args.log_format)
    fmt = args.format
    if fmt not in _FORMATS:
        _log.error(
            "invalid_usage",
            error=f"unknown graph format {fmt!r}: use {' or '.join(map(repr, _FORMATS))}",
        )
        return EXIT_USAGE
    try:
        services = resolve_services(args.target)
        text = render_graph(services, fmt)
    except ConfigurationError as exc:
        _log.error("invalid_usage", error=str(exc))
        return EXIT_USAGE
    sys.stdout.write(text)
    return EXIT_OK
