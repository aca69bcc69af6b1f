"""A process that uses the sqlite broker, for the crash and multi-process tests.

Run as ``python child.py MODE URL QUEUE [N]``; it prints one line per fact, flushed at once,
so that the parent can wait for a state before it kills it:

- ``consume URL QUEUE``: consume (prefetch 10) and ack everything; prints ``consuming``,
  then ``got <body>`` on delivery and ``acked <body>`` once ``ack()`` returned (with
  ``acks=confirmed`` in the URL: once the ack is committed). Stops when stdin closes.
- ``hold URL QUEUE N``: consume (prefetch N) and ack nothing; prints ``got <body> <redelivered>``
  and ``holding`` once N deliveries are held. Runs until killed.
- ``publish URL QUEUE``: publish batches of 20 to the default exchange forever; prints
  ``committed <count>`` after each batch is on disk.
"""

from __future__ import annotations

import sys
import uuid

import anyio
import anyio.to_thread

from actorbus.brokers import Delivery, OutboundMessage
from actorbus.brokers.sqlite import SqliteBroker
from actorbus.messages import Envelope


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def message(queue: str, body: str) -> OutboundMessage:
    return OutboundMessage("", Envelope(uuid.uuid4().hex, "test", queue), body.encode())


async def consume(url: str, queue: str) -> None:
    async with SqliteBroker(url) as broker, anyio.create_task_group() as tg:

        async def ack(d: Delivery) -> None:
            await d.ack()
            say(f"acked {d.body.decode()}")

        def on_delivery(d: Delivery) -> None:
            say(f"got {d.body.decode()}")
            tg.start_soon(ack, d)

        await broker.consume(queue, on_delivery, prefetch=10)
        say("consuming")
        await anyio.to_thread.run_sync(sys.stdin.read)
        tg.cancel_scope.cancel()


async def hold(url: str, queue: str, n: int) -> None:
    async with SqliteBroker(url) as broker:
        held: list[Delivery] = []
        full = anyio.Event()

        def on_delivery(d: Delivery) -> None:
            held.append(d)
            say(f"got {d.body.decode()} {int(d.envelope.redelivered)}")
            if len(held) >= n:
                full.set()

        await broker.consume(queue, on_delivery, prefetch=n)
        await full.wait()
        say("holding")
        await anyio.sleep_forever()


async def publish(url: str, queue: str) -> None:
    async with SqliteBroker(url) as broker:
        count = 0
        while True:
            batch = [message(queue, str(count + i)) for i in range(20)]
            await broker.publish_batch(batch)
            count += len(batch)
            say(f"committed {count}")


def main(argv: list[str]) -> None:
    mode, url, queue = argv[:3]
    if mode == "consume":
        anyio.run(consume, url, queue)
    elif mode == "hold":
        anyio.run(hold, url, queue, int(argv[3]))
    elif mode == "publish":
        anyio.run(publish, url, queue)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
