"""``run TARGET``: resolve services, run them as one App until a signal, map errors to codes."""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from .._log import get_logger
from ..app import App, Service
from ..brokers import redact
from ..describe import ConsoleModel
from ..exceptions import (
    BrokerConnectionError,
    ConfigurationError,
    StoreError,
    SupervisorGaveUpError,
)
from ._imports import resolve_services
from ._logging import configure_logging
from ._options import (
    DEFAULT_DATA_DIR,
    DEFAULT_HTTP,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_broker_option,
    add_store_option,
    env,
    resolve_broker,
    resolve_store,
)
from ._signals import serve_until_signal

__all__ = ("add_run_command", "run_command")

_log = get_logger("actorbus.cli")


def add_run_command(sub: Any) -> None:
    """Add the ``run`` subcommand to the parser's subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the services of a package or module until SIGINT/SIGTERM",
        description=(
            "Run every service of TARGET in this process: `services` runs the whole reference "
            "system, `services.inventory` one service, `pkg.mod:attr` the services named by "
            "attr. Logs one line when ready; exits 0 after a clean SIGINT/SIGTERM shutdown, "
            "1 if a supervisor gave up or the broker failed, 2 on a usage error."
        ),
    )
    parser.add_argument("target", metavar="TARGET", help="package, module, or module:attribute")
    add_broker_option(parser)
    add_store_option(parser)
    parser.add_argument(
        "--http",
        metavar="HOST:PORT",
        default=env("ACTORBUS_HTTP", DEFAULT_HTTP),
        help=f"HTTP front door address, or 'off' (env ACTORBUS_HTTP; default {DEFAULT_HTTP})",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        default=env("ACTORBUS_METRICS", "off"),
        help="also serve Prometheus metrics (GET /metrics) on a port of their own, for "
        "processes without the HTTP front door, or 'off' (env ACTORBUS_METRICS; default off; "
        "needs the metrics extra)",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        default=env("ACTORBUS_ADMIN_TOKEN", ""),
        help="enables the console's replay and purge of dead letters (/ui) for requests "
        "that send it as 'Authorization: Bearer TOKEN' (env ACTORBUS_ADMIN_TOKEN; default: "
        "none, those actions are off)",
    )
    parser.add_argument(
        "--console-allowed-host",
        metavar="NAME[:PORT]",
        action="append",
        default=None,
        help="a name the console (/ui) may also be reached by, for a console behind a reverse "
        "proxy (repeatable; env ACTORBUS_CONSOLE_ALLOWED_HOSTS, comma-separated; default: only "
        "the address the server listens on)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=env("ACTORBUS_DATA_DIR", DEFAULT_DATA_DIR),
        help=f"where services keep their state (env ACTORBUS_DATA_DIR; default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--drain-timeout",
        metavar="SECONDS",
        type=float,
        default=float(env("ACTORBUS_DRAIN_TIMEOUT", "10")),
        help="on shutdown, how long in-flight messages may finish before they are requeued "
        "(env ACTORBUS_DRAIN_TIMEOUT; default 10)",
    )
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.target`` until a shutdown signal; return the process exit code."""
    configure_logging(args.log_level, args.log_format)
    try:
        services = resolve_services(args.target)
        http = None if args.http in ("off", "none", "") else args.http
        metrics_port = None if args.metrics in ("off", "none", "") else args.metrics
        data_dir = Path(args.data_dir)
        app = App(
            services,
            broker=resolve_broker(args.broker, data_dir),
            data_dir=data_dir,
            http=http,
            metrics_port=metrics_port,
            drain_timeout=args.drain_timeout,
            store=resolve_store(args.store, data_dir),
            admin_token=args.admin_token or None,
            system_model=ConsoleModel(services),
            console_allowed_hosts=_allowed_hosts(args.console_allowed_host),
        )
    except ConfigurationError as exc:
        _log.error("invalid_usage", error=str(exc))
        return EXIT_USAGE
    backend_options: dict[str, Any] = {}
    if importlib.util.find_spec("uvloop") is not None and not os.environ.get("ACTORBUS_NO_UVLOOP"):
        backend_options["use_uvloop"] = True
    try:
        return anyio.run(_serve, app, services, backend="asyncio", backend_options=backend_options)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_FAILED


def _allowed_hosts(given: list[str] | None) -> list[str]:
    """The console's allowed hosts: the flags if any, else ``ACTORBUS_CONSOLE_ALLOWED_HOSTS``."""
    if given is None:
        given = env("ACTORBUS_CONSOLE_ALLOWED_HOSTS", "").split(",")
    return [name.strip() for value in given for name in value.split(",") if name.strip()]


async def _serve(app: App, services: list[Service]) -> int:
    async def run(wait_for_signal: Callable[[], Awaitable[None]]) -> None:
        async with app:
            ready: dict[str, Any] = {
                "services": [s.name for s in services],
                "broker": redact(app.broker.url),
            }
            if app.broker.url.startswith("memory:"):
                ready["note"] = "memory:// keeps messages in this process only: a stop loses them"
            if app.store is not None:
                ready["store"] = app.store.url  # the store's URL has its password masked
            if app.http_address is not None:
                host, port = app.http_address
                ready["http"] = f"http://{host}:{port}"
            if app.metrics_address is not None:
                host, port = app.metrics_address
                ready["metrics"] = f"http://{host}:{port}/metrics"
            _log.info("actorbus_ready", **ready)  # the signals are caught already
            await wait_for_signal()

    try:
        await serve_until_signal(run, EXIT_FAILED)
    except SupervisorGaveUpError:
        return EXIT_FAILED  # the runtime logged the one line that explains it
    except BrokerConnectionError as exc:
        _log.error("broker_unavailable", error=str(exc))
        return EXIT_FAILED
    except ConfigurationError as exc:
        _log.error("invalid_usage", error=str(exc))
        return EXIT_USAGE
    except StoreError as exc:  # down at start, or a schema newer than this code
        _log.error("store_unavailable", error=str(exc))  # store errors name redacted URLs
        return EXIT_FAILED
    _log.info("actorbus_stopped")
    return EXIT_OK
