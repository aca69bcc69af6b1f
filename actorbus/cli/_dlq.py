"""``dlq list|show|replay|purge QUEUE``: operate on a queue's dead letters.

Dead letters carry why they died (``x-actorbus-reason``, error type and message, attempts)
and where they came from (original exchange and routing key). ``replay`` publishes them back
there with their ``message_id`` (``eventId``) unchanged, so idempotent consumers drop any
that were handled after all; each is acked from the DLQ only after the broker confirmed the
copy, so a crash mid-replay duplicates at worst and never loses.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from .._log import get_logger
from ..brokers import (
    XH_ATTEMPTS,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_ORIGINAL_EXCHANGE,
    XH_ORIGINAL_QUEUE,
    XH_ORIGINAL_ROUTING_KEY,
    XH_REASON,
    Broker,
    Delivery,
    OutboundMessage,
    connect,
    redact,
)
from ..exceptions import BrokerError, ConfigurationError, QueueNotFoundError
from ..messages import Envelope
from ._logging import configure_logging
from ._parser import add_broker_option

__all__ = ("add_dlq_command",)

_log = get_logger("actorbus.cli")

# Headers that describe a death; a replayed message starts a fresh life without them.
_DEATH_HEADERS = frozenset(
    {
        XH_REASON,
        XH_ERROR_TYPE,
        XH_ERROR_MESSAGE,
        XH_ATTEMPTS,
        XH_ORIGINAL_EXCHANGE,
        XH_ORIGINAL_ROUTING_KEY,
        XH_ORIGINAL_QUEUE,
        "x-actorbus-attempt",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-delivery-count",
    }
)


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
        add_broker_option(p, default="amqp://guest:guest@127.0.0.1:5672/")
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


def _dlq(queue: str) -> str:
    return queue if queue.endswith(".dlq") else f"{queue}.dlq"


def _handler(action: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        configure_logging(args.log_level, args.log_format)
        if args.broker.startswith("memory:"):
            _log.error(
                "invalid_usage",
                error="dlq needs a shared broker: a memory:// broker lives inside one process; "
                "pass --broker amqp://… (or set ACTORBUS_BROKER)",
            )
            return 2
        try:
            code: int = anyio.run(_with_broker, action, args, backend="asyncio")
        except ConfigurationError as exc:
            _log.error("invalid_usage", error=str(exc))
            return 2
        except QueueNotFoundError as exc:
            _log.error("queue_not_found", queue=_dlq(args.queue), error=str(exc))
            return 1
        except BrokerError as exc:
            _log.error("broker_unavailable", broker=redact(args.broker), error=str(exc))
            return 1
        return code

    return run


async def _with_broker(action: Any, args: argparse.Namespace) -> int:
    async with connect(args.broker) as broker:
        code: int = await action(broker, args)
        return code


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    sys.stdout.write((json.dumps(data, default=str) if args.json else text) + "\n")


async def _list(broker: Broker, args: argparse.Namespace) -> int:
    dlq = _dlq(args.queue)
    count = await broker.queue_depth(dlq)
    _out(args, {"queue": dlq, "messages": count}, f"{dlq}\t{count}")
    return 0


def _describe(delivery: Delivery) -> dict[str, Any]:
    env = delivery.envelope
    headers: Mapping[str, Any] = env.headers or {}
    exchange, routing_key = _origin(delivery)
    return {
        "messageId": env.message_id,
        "type": env.type,
        "correlationId": env.correlation_id,
        "reason": headers.get(XH_REASON) or _x_death(headers).get("reason"),
        "errorType": headers.get(XH_ERROR_TYPE),
        "error": headers.get(XH_ERROR_MESSAGE),
        "attempts": headers.get(XH_ATTEMPTS),
        "originalExchange": exchange,
        "originalRoutingKey": routing_key,
        "body": delivery.body.decode("utf-8", "replace")[:2000],
    }


def _x_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        first: Mapping[str, Any] = deaths[-1]  # the oldest death: where it came from
        return first
    return {}


def _origin(delivery: Delivery) -> tuple[str | None, str | None]:
    """Where a dead letter was first published: our headers, else RabbitMQ's x-death."""
    headers: Mapping[str, Any] = delivery.envelope.headers or {}
    exchange = headers.get(XH_ORIGINAL_EXCHANGE)
    routing_key = headers.get(XH_ORIGINAL_ROUTING_KEY)
    if routing_key is None:
        death = _x_death(headers)
        keys = death.get("routing-keys")
        if keys:
            exchange = death.get("exchange", exchange)
            routing_key = keys[0] if isinstance(keys, list | tuple) else str(keys)
    return exchange, routing_key


async def _take(broker: Broker, dlq: str, limit: int | None) -> list[Delivery]:
    taken: list[Delivery] = []
    while limit is None or len(taken) < limit:
        delivery = await broker.get(dlq)
        if delivery is None:
            break
        taken.append(delivery)
    return taken


async def _show(broker: Broker, args: argparse.Namespace) -> int:
    dlq = _dlq(args.queue)
    await broker.queue_depth(dlq)  # an unknown queue fails here, with its name
    taken = await _take(broker, dlq, args.limit)
    try:
        shown = [_describe(d) for d in taken]
    finally:
        for delivery in reversed(taken):  # back where they were, in their order
            await delivery.nack(requeue=True)
    lines = [
        f"{d['messageId']}  {d['type']}  reason={d['reason']}  attempts={d['attempts']}  "
        f"from {d['originalExchange']!r} / {d['originalRoutingKey']!r}\n"
        f"    {d['errorType']}: {d['error']}"
        for d in shown
    ]
    _out(args, {"queue": dlq, "messages": shown}, "\n".join(lines) or f"{dlq} is empty")
    return 0


async def _replay(broker: Broker, args: argparse.Namespace) -> int:
    dlq = _dlq(args.queue)
    await broker.queue_depth(dlq)
    replayed: list[str] = []
    skipped: list[Delivery] = []
    limit = None if args.all or args.message_id else args.limit
    try:
        while limit is None or len(replayed) < limit:
            delivery = await broker.get(dlq)
            if delivery is None:
                break
            env = delivery.envelope
            if args.message_id and env.message_id != args.message_id:
                skipped.append(delivery)
                continue
            exchange, routing_key = _origin(delivery)
            if routing_key is None:
                skipped.append(delivery)
                _log.warning("replay_skipped", message_id=env.message_id, reason="no origin")
                continue
            await broker.publish(_revived(env, exchange or "", routing_key, delivery.body))
            await delivery.ack()
            replayed.append(env.message_id)
            if args.message_id:
                break
    finally:
        for delivery in reversed(skipped):
            await delivery.nack(requeue=True)
    _out(
        args,
        {"queue": dlq, "replayed": replayed},
        f"replayed {len(replayed)} message(s) from {dlq}",
    )
    if args.message_id and not replayed:
        _log.error("message_not_found", queue=dlq, message_id=args.message_id)
        return 1
    return 0


def _revived(env: Envelope, exchange: str, routing_key: str, body: bytes) -> OutboundMessage:
    headers = {k: v for k, v in (env.headers or {}).items() if k not in _DEATH_HEADERS}
    envelope = Envelope(
        env.message_id,
        env.type,
        routing_key,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
        reply_to=env.reply_to,
        content_type=env.content_type,
        headers=headers,
        timestamp=env.timestamp,
    )
    return OutboundMessage(exchange, envelope, body)


async def _purge(broker: Broker, args: argparse.Namespace) -> int:
    dlq = _dlq(args.queue)
    count = await broker.queue_depth(dlq)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigurationError(
                f"purging {count} message(s) from {dlq} needs confirmation: pass --yes"
            )
        prompt = f"delete {count} dead letter(s) from {dlq}? [y/N] "
        answer = await anyio.to_thread.run_sync(input, prompt)
        if answer.strip().lower() not in ("y", "yes"):
            _out(args, {"queue": dlq, "purged": 0}, "nothing deleted")
            return 0
    purged = await broker.purge(dlq)
    _out(args, {"queue": dlq, "purged": purged}, f"deleted {purged} message(s) from {dlq}")
    return 0
