"""``schema TARGET``: write the JSON Schema snapshot of every message, or check against one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._log import get_logger
from ..describe import build_snapshot, compare_snapshots, dump_snapshot, load_snapshot
from ..exceptions import ConfigurationError
from ._imports import resolve_services
from ._logging import configure_logging
from ._options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, env

__all__ = ("add_schema_command", "schema_command")

_log = get_logger("actorbus.cli")


def add_schema_command(sub: Any) -> None:
    """Add the ``schema`` subcommand to the parser's subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "schema",
        help="write the JSON Schema snapshot of every message, or check for breaking changes",
        description=(
            "Write the JSON Schemas of every event and command of TARGET (per wire name and "
            "schema version; every message type of the modules that define them is included) "
            "as a snapshot to keep in the repository. With --check SNAPSHOT, compare the code "
            "with the snapshot instead: exit 1 naming the type, version and field of every "
            "change that breaks an existing version in place (a field removed, renamed or "
            "retyped, a new required field, a removed version); additive changes (a new "
            "optional field, a new version or routing key, a new type) pass. With both "
            "options, the snapshot is written only if the check passes. Exit 2 on a usage "
            "error."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="package, module, or module:attribute")
    parser.add_argument(
        "--output",
        "-o",
        metavar="SNAPSHOT",
        default=env("ACTORBUS_SCHEMA_OUTPUT", ""),
        help="write the snapshot to this file ('-' is stdout; env ACTORBUS_SCHEMA_OUTPUT; "
        "default: stdout unless --check is given)",
    )
    parser.add_argument(
        "--check",
        metavar="SNAPSHOT",
        default=env("ACTORBUS_SCHEMA_CHECK", ""),
        help="fail (exit 1) if the code breaks an existing message version of this snapshot "
        "(env ACTORBUS_SCHEMA_CHECK)",
    )
    parser.set_defaults(handler=schema_command)


def schema_command(args: argparse.Namespace) -> int:
    """Write or check the schema snapshot of ``args.target``; return the process exit code."""
    configure_logging(args.log_level, args.log_format)
    try:
        snapshot = build_snapshot(resolve_services(args.target))
        if args.check:
            path = Path(args.check)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read snapshot {args.check!r}: {exc.strerror or exc}; create it "
                    f"with `python -m actorbus schema {args.target} --output {args.check}`"
                ) from exc
            changes = compare_snapshots(load_snapshot(text, args.check), snapshot)
            breaking = [c for c in changes if c.breaking]
            compatible = [c for c in changes if not c.breaking]
            if breaking:
                lines = [
                    f"{args.check}: {len(breaking)} breaking change(s) to existing message "
                    "versions:",
                    *(f"  {change}" for change in breaking),
                    "Keep existing versions as they are: give a new optional field a "
                    "default, and publish a breaking change under a new routing key "
                    "(e.g. order.created.v2) beside the old one.",
                ]
                sys.stdout.write("\n".join(lines) + "\n")
                return EXIT_FAILED
            if compatible:
                lines = [
                    f"{args.check}: no breaking change; {len(compatible)} compatible change(s) "
                    "not yet in the snapshot:",
                    *(f"  {change}" for change in compatible),
                    f"Update it with `python -m actorbus schema {args.target} --output "
                    f"{args.check}`.",
                ]
            else:
                lines = [f"{args.check}: no breaking change; the snapshot is up to date."]
            sys.stdout.write("\n".join(lines) + "\n")
        output = args.output or ("" if args.check else "-")
        if output == "-":
            sys.stdout.write(dump_snapshot(snapshot))
        elif output:
            try:
                Path(output).write_text(dump_snapshot(snapshot), encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write snapshot {output!r}: {exc.strerror or exc}"
                ) from exc
            _log.info("schema_snapshot_written", path=output, messages=len(snapshot["messages"]))
    except ConfigurationError as exc:
        _log.error("invalid_usage", error=str(exc))
        return EXIT_USAGE
    return EXIT_OK
