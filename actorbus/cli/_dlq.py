"""``dlq list|show|replay|purge QUEUE``: operate on a queue's dead letters.

Parsing and printing only: the operations are :mod:`actorbus.brokers`'s dead-letter functions
(``dead_letter_count``, ``peek_dead_letters``, ``replay_dead_letters``,
``purge_dead_letters``), which say what a dead letter records and how replay keeps it safe.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from .._log import get_logger
from ..brokers import (
    Broker,
    connect,
    dead_letter_count,
    dead_letter_queue,
    peek_dead_letters,
    purge_dead_letters,
    redact,
    replay_dead_letters,
)
from ..exceptions import BrokerError, ConfigurationError, QueueNotFoundError
from ._logging import configure_logging
from ._options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_broker_option

__all__ = ("add_dlq_command",)

_log = get_logger("actorbus.cli")


def add_dlq_command(sub: Any) -> None:
    """Add ``dlq`` and its actions to the parser's subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "dlq",
        help="list, show, replay or purge the dead letters of a queue",
        description=(
            "Operate on QUEUE's dead-letter queue (QUEUE.dlq) on a shared broker. "
            "Exit codes: 0 done, 1 broker unreachable or unknown queue, 2 usage error."
        ),
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        p.add_argument(
            "queue", metavar="QUEUE", help="the work queue (its DLQ is QUEUE.dlq), or a .dlq"
        )
        add_broker_option(p, default="amqp://guest:guest@127.0.0.1:5672/", in_process=False)
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        return p

    p = action("list", "print how many dead letters QUEUE has")
    p.set_defaults(handler=_handler(_list))
    p = action("show", "print dead letters with their error, attempts and original routing")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(handler=_handler(_show))
    p = action("replay", "publish dead letters back to their original exchange and routing key")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--limit", type=int, help="replay at most this many, oldest first")
    group.add_argument("--all", action="store_true", help="replay every dead letter")
    group.add_argument("--message-id", help="replay only the message with this id")
    p.set_defaults(handler=_handler(_replay))
    p = action("purge", "delete every dead letter of QUEUE")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=_handler(_purge))


def _handler(action: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        configure_logging(args.log_level, args.log_format)
        if args.broker.startswith("memory:"):
            _log.error(
                "invalid_usage",
                error="dlq needs a shared broker: a memory:// broker lives inside one process; "
                "pass --broker sqlite:///DATA_DIR/broker.sqlite3 (the embedded broker of run) "
                "or amqp://… (or set ACTORBUS_BROKER)",
            )
            return EXIT_USAGE
        try:
            code: int = anyio.run(_with_broker, action, args, backend="asyncio")
        except ConfigurationError as exc:
            _log.error("invalid_usage", error=str(exc))
            return EXIT_USAGE
        except QueueNotFoundError as exc:
            _log.error("queue_not_found", queue=dead_letter_queue(args.queue), error=str(exc))
            return EXIT_FAILED
        except BrokerError as exc:
            _log.error("broker_unavailable", broker=redact(args.broker), error=str(exc))
            return EXIT_FAILED
        return code

    return run


async def _with_broker(action: Any, args: argparse.Namespace) -> int:
    async with connect(args.broker) as broker:
        code: int = await action(broker, args)
        return code


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    sys.stdout.write((json.dumps(data, default=str) if args.json else text) + "\n")


async def _list(broker: Broker, args: argparse.Namespace) -> int:
    dlq = dead_letter_queue(args.queue)
    count = await dead_letter_count(broker, args.queue)
    _out(args, {"queue": dlq, "messages": count}, f"{dlq}\t{count}")
    return EXIT_OK


async def _show(broker: Broker, args: argparse.Namespace) -> int:
    dlq = dead_letter_queue(args.queue)
    shown = await peek_dead_letters(broker, args.queue, args.limit)
    lines = [
        f"{d.message_id}  {d.type}  reason={d.reason}  attempts={d.attempts}  "
        f"from {d.original_exchange!r} / {d.original_routing_key!r}\n"
        f"    {d.error_type}: {d.error}"
        for d in shown
    ]
    data = {"queue": dlq, "messages": msgspec.to_builtins(shown)}
    _out(args, data, "\n".join(lines) or f"{dlq} is empty")
    return EXIT_OK


async def _replay(broker: Broker, args: argparse.Namespace) -> int:
    dlq = dead_letter_queue(args.queue)
    limit = None if args.all or args.message_id else args.limit
    replayed = await replay_dead_letters(
        broker, args.queue, limit=limit, message_id=args.message_id
    )
    _out(
        args,
        {"queue": dlq, "replayed": replayed},
        f"replayed {len(replayed)} message(s) from {dlq}",
    )
    if args.message_id and not replayed:
        _log.error("message_not_found", queue=dlq, message_id=args.message_id)
        return EXIT_FAILED
    return EXIT_OK


async def _purge(broker: Broker, args: argparse.Namespace) -> int:
    dlq = dead_letter_queue(args.queue)
    count = await dead_letter_count(broker, args.queue)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError(
                f"purging {count} message(s) from {dlq} needs confirmation: pass --yes"
            )
        prompt = f"delete {count} dead letter(s) from {dlq}? [y/N] "
        answer = await anyio.to_thread.run_sync(input, prompt)
        if answer.strip().lower() not in ("y", "yes"):
            _out(args, {"queue": dlq, "purged": 0}, "nothing deleted")
            return EXIT_OK
    purged = await purge_dead_letters(broker, args.queue)
    _out(args, {"queue": dlq, "purged": purged}, f"deleted {purged} message(s) from {dlq}")
    return EXIT_OK
