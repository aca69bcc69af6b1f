"""A subscription to one queue: a supervised pull loop per JetStream consumer of the queue.

A queue is several JetStream consumers (one per binding filter, its home on the default
exchange, its retry waits). Each gets an inbox subscription whose callback hands the
messages over as they arrive (nats-py's ``PullSubscription.fetch`` costs a task, a
``wait_for`` and a uuid per message, which made consume 0.4x as fast as raw nats-py), and a
loop that keeps pull requests outstanding for the room the subscription has (``prefetch``
minus its unsettled deliveries minus what earlier requests may still bring):

- the *primary* consumers (the binding filters; the home of a queue without bindings)
  share the prefetch, each up to an even share of it, and ask again once half of their
  share is free; with one binding, one request fills the whole window;
- the *secondary* ones (the retry waits; the home of a queue with bindings, which gets
  only direct sends) keep a request for one message outstanding, as before.

A pull request expires after :data:`FETCH_TIMEOUT`; the server then answers ``408`` with
``Nats-Pending-Messages`` (what it did not deliver), so the count of messages still to come
stays exact; a request rejected outright (``409``) is taken back whole. Each request has a
reply subject of its own under the inbox, so every status names its request. A request
whose status went missing (a dropped connection) is forgotten once it must have expired.

nats-py's pull subscriptions do not recover by themselves (a pull request is lost when the
connection drops, nats.py #418/#504), so each loop re-subscribes after any error, with
backoff, and the broker :meth:`~NatsSubscription.kick`-s the loops after a reconnect so that
they ask again at once. A loop that is not pulling makes the subscription inactive, and the
broker not ready. nats-server 2.9 delivers to a pull request whose inbox was unsubscribed
(the message then waits out AckWait), so a stopping loop keeps its inbox until every request
that may still deliver expired, and gives back what arrives.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from typing import TYPE_CHECKING, Protocol

import anyio

from ..._log import get_logger
from .._deadletter import (
    REASON_DELIVERY_LIMIT,
    REASON_MESSAGE_TOO_LARGE,
    XH_ERROR_MESSAGE,
    XH_ERROR_TYPE,
    XH_REASON,
)
from .._protocol import DeliveryCallback
from ._delivery import Holder, NatsDelivery
from ._mapping import decode_key, envelope_from_headers, exchange_prefix

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext

    from ._topology import ConsumerRef

__all__ = ("FETCH_TIMEOUT", "Host", "NatsSubscription", "admit")

_log = get_logger("actorbus.brokers", broker="nats")

#: Seconds a pull request waits at the server before it expires (and is sent again).
FETCH_TIMEOUT = 1.0
#: Seconds after its expiry by which a pull request's status must have arrived.
_GRACE = 2.0
_EXPIRES_NS = int(FETCH_TIMEOUT * 1e9)
_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"
_DESCRIPTION = "Description"


class Host(Holder, Protocol):
    """What a subscription needs from its broker."""

    @property
    def js(self) -> JetStreamContext: ...

    @property
    def nc(self) -> Client: ...

    @property
    def connected(self) -> bool: ...

    @property
    def max_message_size(self) -> int: ...

    def delivery_limit(self, queue: str) -> int | None: ...

    def forget(self, subscription: NatsSubscription) -> None: ...


@functools.lru_cache(maxsize=256)
def _key_offset(exchange: str) -> int:
    # Where the routing key starts in a subject of ``exchange``: after its prefix and a dot.
    return len(exchange_prefix(exchange)) + 1


def _routing_key(ref: ConsumerRef, subject: str, queue: str) -> str:
    if not ref.exchange:
        return queue
    key = subject[_key_offset(ref.exchange) :]
    return decode_key(key.split(".")) if "%" in key else key


def _ack_fields(msg: Msg) -> tuple[int, float]:
    """Return ``(times delivered, stored at)`` from a JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>``, or with
    ``<domain>.<account>`` after ``ACK`` and a random token at the end (nats-server 2.10+).
    Parsed here: nats-py's ``Msg.metadata`` builds dataclasses and a ``datetime`` for it.
    """
    tokens = msg.reply.split(".")
    try:
        if len(tokens) == 9:
            return int(tokens[4]), int(tokens[7]) / 1e9
        if len(tokens) >= 11:
            return int(tokens[6]), int(tokens[9]) / 1e9
    except ValueError:
        pass
    meta = msg.metadata  # raises for what is no JetStream reply subject
    return meta.num_delivered or 1, meta.timestamp.timestamp()


async def admit(
    msg: Msg, ref: ConsumerRef, queue: str, host: Host, holder: Holder, *, sync: bool
) -> NatsDelivery | None:
    """Turn ``msg`` into a delivery, or settle it here and return ``None``.

    Settled here: a retry copy that is not yet due (``-NAK`` with the remaining delay), a
    body over ``max_message_size`` and a message delivered more often than the queue's
    ``delivery_limit`` (both dead-lettered with the reason).
    """
    delivered, stamp = _ack_fields(msg)
    exchange, envelope, due = envelope_from_headers(
        msg.headers,
        _routing_key(ref, msg.subject, queue),
        timestamp=stamp,
        redelivered=delivered > (2 if ref.retry else 1),
    )
    if due:
        wait = due - time.time()
        if wait > 0.001:
            await msg.nak(delay=wait)
            return None
    delivery = NatsDelivery(
        msg, envelope, exchange or ref.exchange, queue, holder, sync=sync, retry_copy=ref.retry
    )
    holder.take(delivery)
    limit = host.max_message_size
    if limit and len(msg.data) > limit and not queue.endswith(".dlq"):
        size = len(msg.data)
        _log.warning("message_too_large_dead_lettered", queue=queue,
                     message_id=envelope.message_id, size=size, limit=limit)  # fmt: skip
        await delivery.dead_letter({
            XH_REASON: REASON_MESSAGE_TOO_LARGE,
            XH_ERROR_TYPE: "MessageTooLargeError",
            XH_ERROR_MESSAGE: f"message of {size} bytes exceeds the limit of {limit} bytes",
        })  # fmt: skip
        return None
    max_deliveries = host.delivery_limit(queue)
    if max_deliveries is not None and delivered > max_deliveries + 1 and not ref.retry:
        await delivery.dead_letter({
            XH_REASON: REASON_DELIVERY_LIMIT,
            XH_ERROR_MESSAGE: f"delivered {delivered} times; the queue's limit is "
            f"{max_deliveries} redeliveries",
        })  # fmt: skip
        return None
    return delivery


class _PullFailed(Exception):
    """The server refused a pull request; the loop backs off and subscribes again."""


class _Pull:
    """The pull state of one JetStream consumer of a subscription."""

    __slots__ = (
        "cap",
        "failure",
        "inbox",
        "next_request",
        "outstanding",
        "ref",
        "requests",
        "secondary",
        "subject",
        "threshold",
        "wake",
    )

    def __init__(self, ref: ConsumerRef) -> None:
        self.ref = ref
        self.secondary = True
        self.cap = 1
        self.threshold = 1
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{ref.stream}.{ref.name}"
        self.inbox = ""
        self.next_request = 0
        self.outstanding = 0  # messages the live requests may still deliver
        self.requests: dict[str, tuple[int, float]] = {}  # reply subject → (batch, expiry)
        self.failure: str | None = None
        self.wake = anyio.Event()

    def assign(self, *, secondary: bool, share: int) -> None:
        self.secondary = secondary
        self.cap = 1 if secondary else share
        self.threshold = max(1, self.cap // 2)

    def forget_requests(self) -> None:
        self.requests.clear()
        self.outstanding = 0


class NatsSubscription:
    """A running consumer of one queue (see the module docstring)."""

    def __init__(
        self,
        host: Host,
        queue: str,
        refs: list[ConsumerRef],
        callback: DeliveryCallback,
        prefetch: int,
    ) -> None:
        self._host = host
        self._queue = queue
        self._refs = refs
        self._callback = callback
        self.prefetch = prefetch
        self.unsettled = 0
        self._pulls = [_Pull(ref) for ref in refs]
        self._primary: list[_Pull] = []
        self._assign()
        self._tg: anyio.abc.TaskGroup | None = None
        self._sleeping: list[_Pull] = []
        self._healthy = dict.fromkeys((ref.name for ref in refs), False)
        self._all_healthy = anyio.Event()
        self._cancelled = False
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    def __repr__(self) -> str:
        return (
            f"<NatsSubscription queue={self._queue!r} prefetch={self.prefetch} "
            f"unsettled={self.unsettled} active={self.active}>"
        )

    @property
    def queue(self) -> str:
        """The queue consumed from."""
        return self._queue

    @property
    def active(self) -> bool:
        """Whether every pull loop is pulling (false while reconnecting or after a cancel)."""
        return not self._cancelled and self._host.connected and all(self._healthy.values())

    # ------------------------------------------------------------ holder

    def take(self, delivery: NatsDelivery) -> None:
        """Hold ``delivery`` unsettled (counts against the prefetch)."""
        self.unsettled += 1
        self._host.take(delivery)

    def release(self, delivery: NatsDelivery) -> None:
        """Forget a settled delivery: room for one more."""
        self.unsettled -= 1
        self._host.release(delivery)
        if self._sleeping:
            self._wake_wanting()

    def dead_letters(self, queue: str) -> bool:
        """Whether ``queue`` has a dead-letter queue."""
        return self._host.dead_letters(queue)

    async def publish_copy(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish a copy and await its JetStream ack."""
        await self._host.publish_copy(subject, body, headers)

    # ------------------------------------------------------------ consumers

    def _assign(self) -> None:
        """Split the prefetch between the consumers (see the module docstring)."""
        bound = any(p.ref.exchange for p in self._pulls)
        primary = [p for p in self._pulls if not p.ref.retry and (p.ref.exchange or not bound)]
        share = max(1, self.prefetch // max(1, len(primary)))
        for pull in self._pulls:
            pull.assign(secondary=pull not in primary, share=share)
        self._primary = primary

    def follow(self, ref: ConsumerRef) -> None:
        """Pull from ``ref`` too: a consumer the queue got after this subscription started.

        A binding declared after ``consume`` is a JetStream consumer of its own; its loop
        shares this subscription's prefetch, health and cancel.
        """
        tg = self._tg
        if self._cancelled or tg is None or any(p.ref == ref for p in self._pulls):
            return
        tg.start_soon(self._loop, self._add(ref))

    def _add(self, ref: ConsumerRef) -> _Pull:
        if ref not in self._refs:
            self._refs.append(ref)
        pull = _Pull(ref)
        self._pulls.append(pull)
        self._healthy[ref.name] = False  # not ready until its loop pulls
        self._assign()
        return pull

    # ------------------------------------------------------------ room

    def _want(self, pull: _Pull) -> int:
        """How many messages ``pull`` should ask for now (0: none)."""
        if self._cancelled or pull.failure is not None:
            return 0
        if pull.secondary:
            return 1 if pull.outstanding == 0 and self.unsettled < self.prefetch else 0
        free = self.prefetch - self.unsettled
        for other in self._primary:
            free -= other.outstanding
        room = min(pull.cap - pull.outstanding, free)
        if room >= pull.threshold:
            return room
        if pull.outstanding == 0 and self.unsettled < self.prefetch:
            return max(room, 1)  # one each at least, or a consumer could starve another
        return 0

    def _wake_wanting(self) -> None:
        sleeping = self._sleeping
        i = 0
        while i < len(sleeping):
            pull = sleeping[i]
            if self._want(pull):
                del sleeping[i]
                pull.wake.set()
            else:
                i += 1

    def _wake_all(self) -> None:
        for pull in self._pulls:
            pull.wake.set()
        self._sleeping.clear()

    def kick(self) -> None:
        """Forget the pull requests in flight (lost with a connection): every loop asks again."""
        for pull in self._pulls:
            pull.forget_requests()
        self._wake_all()

    # ------------------------------------------------------------ messages

    async def _on_message(self, pull: _Pull, msg: Msg) -> None:
        # nats-py's subscription task calls this for every message on the pull inbox.
        headers = msg.headers
        if headers is not None and _STATUS in headers:
            self._on_status(pull, msg.subject, headers)
            return
        if pull.outstanding:
            pull.outstanding -= 1
            if not pull.outstanding:  # its requests are filled: it may ask again
                pull.wake.set()
        if self._cancelled:
            await msg.nak()  # given back: this subscription is going away
            return
        try:
            delivery = await admit(msg, pull.ref, self._queue, self._host, self, sync=False)
            if delivery is None:
                return
            try:
                self._callback(delivery)
            except Exception:
                _log.exception("delivery_callback_failed", queue=self._queue)
                await delivery.nack(requeue=True)
        except Exception:  # never into nats-py's error callback: the message comes back
            _log.exception("nats_delivery_failed", queue=self._queue, consumer=pull.ref.name)

    def _on_status(self, pull: _Pull, subject: str, headers: dict[str, str]) -> None:
        code = headers[_STATUS]
        if code == "100":  # an idle heartbeat
            return
        request = pull.requests.pop(subject, None)
        if request is None:
            return  # a request already forgotten (a reconnect, or past its expiry)
        pending = headers.get(_PENDING)
        if pending is not None:  # expired, or ended by the server: this much did not come
            try:
                pull.outstanding = max(0, pull.outstanding - int(pending))
            except ValueError:
                pull.outstanding = max(0, pull.outstanding - request[0])
        else:  # refused (or no messages for a no-wait request): none of it comes
            pull.outstanding = max(0, pull.outstanding - request[0])
        description = headers.get(_DESCRIPTION, "")
        if pending is None or description == "Consumer Deleted":
            pull.failure = f"{code} {description}".strip()  # the loop backs off and checks
        self._wake_all()

    def _expire(self, pull: _Pull, now: float) -> float:
        """Forget requests that must have ended; return when the next one expires."""
        requests = pull.requests
        if not requests:
            return now + FETCH_TIMEOUT
        live = 0
        first = float("inf")
        for reply, (batch, expiry) in list(requests.items()):
            if expiry + _GRACE < now:
                del requests[reply]  # its status went missing, or it was filled
            else:
                live += batch
                first = min(first, expiry + _GRACE)
        pull.outstanding = min(pull.outstanding, live)
        return first

    async def _request(self, pull: _Pull, nc: Client, batch: int) -> None:
        pull.next_request += 1
        reply = f"{pull.inbox}.{pull.next_request}"
        pull.requests[reply] = (batch, time.monotonic() + FETCH_TIMEOUT)
        pull.outstanding += batch
        payload = json.dumps({"batch": batch, "expires": _EXPIRES_NS}).encode()
        try:
            await nc.publish(pull.subject, payload, reply=reply)
        except BaseException:
            pull.requests.pop(reply, None)
            pull.outstanding = max(0, pull.outstanding - batch)
            raise

    # ------------------------------------------------------------ loops

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Run every pull loop until cancelled; report started once all subscribed."""
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    for pull in self._pulls:
                        tg.start_soon(self._loop, pull)
                    with anyio.move_on_after(10):
                        await self._all_healthy.wait()
                    task_status.started()
        finally:
            self._tg = None
            self._done.set()

    def _stopped(self) -> bool:
        return self._cancelled  # a call: mypy must not narrow the flag across awaits

    def _set_healthy(self, pull: _Pull, healthy: bool) -> None:
        self._healthy[pull.ref.name] = healthy
        if healthy and all(self._healthy.values()):
            self._all_healthy.set()

    async def _loop(self, pull: _Pull | ConsumerRef) -> None:
        if not isinstance(pull, _Pull):  # a loop started from outside: see follow()
            if self._cancelled:
                return
            pull = next((p for p in self._pulls if p.ref == pull), None) or self._add(pull)
        backoff = 0.05
        ref = pull.ref
        while not self._stopped():
            sub: Subscription | None = None
            try:
                nc = self._host.nc
                await self._host.js.consumer_info(ref.stream, ref.name)  # it exists
                pull.forget_requests()
                pull.failure = None
                pull.inbox = nc.new_inbox()
                sub = await nc.subscribe(
                    f"{pull.inbox}.*", cb=functools.partial(self._on_message, pull)
                )
                self._set_healthy(pull, True)
                backoff = 0.05
                while not self._stopped():
                    if pull.failure is not None:
                        raise _PullFailed(pull.failure)
                    batch = self._want(pull)
                    if batch:
                        await self._request(pull, nc, batch)
                        continue
                    pull.wake = anyio.Event()
                    self._sleeping.append(pull)
                    with anyio.move_on_after(
                        self._expire(pull, time.monotonic()) - time.monotonic()
                    ):
                        await pull.wake.wait()
                    if pull in self._sleeping:
                        self._sleeping.remove(pull)
                    self._expire(pull, time.monotonic())
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self._set_healthy(pull, False)
                if not self._stopped():
                    _log.warning(
                        "nats_pull_loop_failed",
                        queue=self._queue,
                        consumer=ref.name,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=backoff,
                    )
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
            finally:
                if sub is not None:
                    with anyio.CancelScope(shield=True):
                        await self._drain(pull, sub)

    async def _drain(self, pull: _Pull, sub: Subscription) -> None:
        # Keep the inbox until no request may deliver any more (each is filled, expired or
        # refused: nothing outstanding), at most until the last one expired; the message
        # callback gives back what arrives meanwhile.
        if pull.outstanding:
            last = max((expiry for _, expiry in pull.requests.values()), default=0.0)
            with anyio.move_on_after(max(last - time.monotonic(), 0) + 0.05):
                while pull.outstanding:
                    pull.wake = anyio.Event()
                    await pull.wake.wait()
        pull.forget_requests()
        with contextlib.suppress(Exception):  # a closed connection took it along
            await sub.unsubscribe()

    async def cancel(self) -> None:
        """Stop receiving; deliveries in flight may still be settled."""
        if self._cancelled:
            return
        self._cancelled = True
        self._wake_all()
        self._host.forget(self)
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._done.wait()  # every pull inbox unsubscribed: no delivery goes astray
