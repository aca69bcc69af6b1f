"""The command registry and the parser built from it.

Each command lives in a module of its own with one ``add_<name>_command(subparsers)``
function; this module lists them, in the order ``--help`` shows them. Options every command
shares come from :mod:`._options`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .._version import __version__
from ._asyncapi import add_asyncapi_command
from ._dlq import add_dlq_command
from ._graph import add_graph_command
from ._options import add_log_options
from ._run import add_run_command
from ._schema import add_schema_command

__all__ = ("COMMANDS", "build_parser")

#: The commands, in the order of ``--help``.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    add_run_command,
    add_asyncapi_command,
    add_graph_command,
    add_schema_command,
    add_dlq_command,
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``actorbus`` argument parser with all of its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m actorbus",
        description="actorbus: supervised actors consuming from message brokers.",
        epilog="Run 'python -m actorbus COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"actorbus {__version__}")
    add_log_options(parser)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
    return parser
