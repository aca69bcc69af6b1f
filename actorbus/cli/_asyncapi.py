"""``asyncapi TARGET``: write the AsyncAPI 3.0 document of a system's services."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._log import get_logger
from ..describe import build_asyncapi
from ..exceptions import ConfigurationError
from ._imports import resolve_services
from ._logging import configure_logging
from ._options import EXIT_OK, EXIT_USAGE, env

__all__ = ("add_asyncapi_command", "asyncapi_command")

_log = get_logger("actorbus.cli")


def add_asyncapi_command(sub: Any) -> None:
    """Add the ``asyncapi`` subcommand to the parser's subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "asyncapi",
        help="write the AsyncAPI 3.0 document of the services",
        description=(
            "Write the AsyncAPI 3.0 document (JSON) of every service of TARGET: a channel per "
            "routing key on each exchange, per reply and per queue, with AMQP bindings (NATS "
            "subjects and bindings for a nats:// server); send "
            "and receive operations per service; the JSON Schemas of every message version. "
            "Nothing connects to a broker. Exits 0 when written, 2 on a usage error."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="package, module, or module:attribute")
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        default=env("ACTORBUS_ASYNCAPI_OUTPUT", "-"),
        help="where to write the document; '-' is stdout (env ACTORBUS_ASYNCAPI_OUTPUT; default -)",
    )
    parser.add_argument(
        "--title",
        metavar="TEXT",
        default=env("ACTORBUS_ASYNCAPI_TITLE", ""),
        help="the document's info.title (env ACTORBUS_ASYNCAPI_TITLE; default: TARGET)",
    )
    parser.add_argument(
        "--api-version",
        metavar="VERSION",
        default=env("ACTORBUS_ASYNCAPI_VERSION", "1.0.0"),
        help="the document's info.version, the version of the described API "
        "(env ACTORBUS_ASYNCAPI_VERSION; default 1.0.0)",
    )
    parser.add_argument(
        "--server",
        "--broker",
        dest="server",
        metavar="URL",
        default=env("ACTORBUS_ASYNCAPI_SERVER", "amqp://127.0.0.1:5672/"),
        help="the broker written as the document's server (credentials dropped; 'none' for no "
        "servers section); a nats:// or tls:// URL describes the NATS JetStream subjects, "
        "consumers and bindings, any other AMQP exchanges and queues "
        "(env ACTORBUS_ASYNCAPI_SERVER; default amqp://127.0.0.1:5672/)",
    )
    parser.add_argument(
        "--protocol",
        choices=("amqp", "nats"),
        default=env("ACTORBUS_ASYNCAPI_PROTOCOL", "") or None,
        help="describe this broker's mapping whatever the server URL says (needed with "
        "--server none) (env ACTORBUS_ASYNCAPI_PROTOCOL; default: from the server URL)",
    )
    parser.set_defaults(handler=asyncapi_command)


def asyncapi_command(args: argparse.Namespace) -> int:
    """Write the AsyncAPI document of ``args.target``; return the process exit code."""
    configure_logging(args.log_level, args.log_format)
    try:
        services = resolve_services(args.target)
        document = build_asyncapi(
            services,
            title=args.title or args.target,
            version=args.api_version,
            server=None if args.server in ("none", "off", "") else args.server,
            protocol=args.protocol,
        )
    except ConfigurationError as exc:
        _log.error("invalid_usage", error=str(exc))
        return EXIT_USAGE
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        _log.error("invalid_usage", error=f"cannot write {args.output!r}: {exc.strerror or exc}")
        return EXIT_USAGE
    _log.info("asyncapi_written", path=args.output, services=[s.name for s in services])
    return EXIT_OK
