"""The durable consumer path: identity, inbox, ctx.tx, outbox, relay and ack after COMMIT.

Every test runs on the memory broker with a real store: SQLite in ``tmp_path``, and the key ones
again on PostgreSQL (a throwaway cluster; marked ``postgres``).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from actorbus import Event, HandlerContext, RetryPolicy, Service
from actorbus._host import host_key
from actorbus.app import App, ServiceContext
from actorbus.app._durable import message_identity
from actorbus.app._relay import owner_dead, relay_owner
from actorbus.brokers import XH_ERROR_MESSAGE, XH_REASON
from actorbus.exceptions import ConfigurationError
from actorbus.messages import Envelope, OutboundMessage
from actorbus.runtime import Backoff
from actorbus.stores import Store, open_store
from actorbus.testing import ServiceHarness, capture_logs
from tests.stores._postgres_fixture import postgres_url as postgres_url

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(
    max_attempts=3, backoff=Backoff(initial=0.001, factor=1.0, maximum=0.001, jitter=0)
)
TIERS = (0.001,)
EXCHANGE = "durable.topic"
NOW = "2024-05-01T12:00:00Z"


class Deposit(Event, routing_key="durable.deposit", version=1):
    account: str
    amount: int


class Deposited(Event, routing_key="durable.deposited", version=1):
    account: str
    total: int


class Bank:
    """A durable service whose handler changes a balance and publishes the new total."""

    def __init__(self, *, durable: bool | None = None) -> None:
        self.calls: list[str] = []
        self.fail_next = 0
        self.errors: list[str] = []
        self.service = Service(
            "bank",
            exchange=EXCHANGE,
            retry=FAST,
            retry_delays=TIERS,
            durable=durable,
            prefetch=64,
        )
        self.service.declare_publishes(Deposited)
        self.service.startup(self._migrate)
        self.service.add_handler(Deposit, self.on_deposit)

    async def _migrate(self, ctx: ServiceContext) -> None:
        if ctx.store is not None:
            await ctx.store.migrate(
                "bank",
                ["CREATE TABLE balances (account TEXT PRIMARY KEY, total INTEGER NOT NULL)"],
            )

    async def on_deposit(self, event: Deposit, ctx: HandlerContext) -> None:
        self.calls.append(event.account)
        tx = ctx.tx
        await tx.execute(
            "INSERT INTO balances (account, total) VALUES (?, ?) ON CONFLICT (account) "
            "DO UPDATE SET total = balances.total + excluded.total",
            event.account,
            event.amount,
        )
        total = await tx.fetchval("SELECT total FROM balances WHERE account = ?", event.account)
        ctx.publish(Deposited(account=event.account, total=total))
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("boom after publishing")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store per test: a SQLite file, or a schema of its own on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bank.sqlite3"
    base: str = request.getfixturevalue("postgres_url")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema=t_{uuid.uuid4().hex[:12]}"


async def balance(store: Store, account: str) -> int | None:
    async with store.transaction() as tx:
        value = await tx.fetchval("SELECT total FROM balances WHERE account = ?", account)
    return None if value is None else int(value)


def raw(
    body: dict[str, Any], *, message_id: str, routing_key: str = "durable.deposit"
) -> OutboundMessage:
    """A message as a foreign producer sends it: our envelope fields only where given."""
    envelope = Envelope(message_id, routing_key, routing_key, content_type="application/json")
    return OutboundMessage(EXCHANGE, envelope, msgspec.json.encode(body), mandatory=False)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait, without sleeping, until ``condition()`` holds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()


async def test_identity_is_the_payload_event_id_else_the_transport_id() -> None:
    assert message_identity(b'{"eventId":"e-1","x":[1,{"y":2}]}', "t-1") == "e-1"
    assert message_identity(b'{"x":1}', "t-1") == "t-1"
    assert message_identity(b'{"eventId":"","x":1}', "t-1") == "t-1"
    assert message_identity(b'{"eventId":null}', "") == ""
    assert message_identity(b"[1,2]", "") == ""


async def test_a_duplicated_delivery_has_one_effect(store_url: str) -> None:
    bank = Bank()
    async with ServiceHarness([bank.service], store=store_url) as bus:
        event = Deposit(account="a", amount=5)
        bus.faults.duplicate_next_deliveries(1)
        await bus.publish(event)
        await bus.publish(event)  # the same eventId again, as a producer retrying would
        await bus.wait_until_idle()
        assert bank.calls == ["a"]
        assert await balance(bus.app.store, "a") == 5  # type: ignore[arg-type]
        assert [m.total for m in await bus.wait_for(Deposited)] == [5]
        assert len(bus.published_to("durable.deposited")) == 1


async def test_events_without_transport_message_id_each_take_effect_once(store_url: str) -> None:
    bank = Bank()
    async with ServiceHarness([bank.service], store=store_url) as bus:
        for _ in range(3):
            body = {"eventId": str(uuid.uuid4()), "occurredAt": NOW, "account": "a", "amount": 1}
            await bus.broker.publish(raw(body, message_id=""))
        await bus.wait_until_idle()
        assert bank.calls == ["a", "a", "a"]  # no dedupe under the empty key
        assert await balance(bus.app.store, "a") == 3  # type: ignore[arg-type]


@pytest.mark.parametrize("message_id", ["amqp-1", ""])
async def test_a_payload_without_event_id_is_dead_lettered_unhandled(
    store_url: str, message_id: str
) -> None:
    # Identity is never invented, and a transport message_id does not stand in for the
    # payload's eventId: the in-memory path decodes the same way.
    bank = Bank()
    async with ServiceHarness([bank.service], store=store_url) as bus:
        with capture_logs() as logs:
            body = {"occurredAt": NOW, "account": "a", "amount": 2}
            await bus.broker.publish(raw(body, message_id=message_id))
            await bus.wait_until_idle()
        assert bank.calls == []
        dead = await bus.broker.get("bank.queue.dlq")
        assert dead is not None
        assert dead.envelope.headers[XH_REASON] == "decode-error"
        text = dead.envelope.headers[XH_ERROR_MESSAGE]
        assert "`$.eventId` is missing" in text
        assert "identity is never invented" in text
        await dead.ack()
        assert [e["reason"] for e in logs if e["event"] == "message_dead_lettered"] == [
            "decode-error"
        ]


async def test_state_and_published_event_commit_together(store_url: str) -> None:
    bank = Bank()
    bank.fail_next = 1  # the first attempt publishes, writes, then raises
    async with ServiceHarness([bank.service], store=store_url) as bus:
        await bus.publish(Deposit(account="a", amount=7))
        await bus.wait_until_idle()
        assert bank.calls == ["a", "a"]  # retried
        # The failed attempt's UPDATE and its Deposited were rolled back with its unit.
        assert await balance(bus.app.store, "a") == 7  # type: ignore[arg-type]
        assert [m.total for m in await bus.wait_for(Deposited)] == [7]
        assert len(bus.published_to("durable.deposited")) == 1


async def test_a_failing_handler_that_gives_up_leaves_nothing(store_url: str) -> None:
    bank = Bank()
    bank.fail_next = 99
    async with ServiceHarness([bank.service], store=store_url) as bus:
        await bus.publish(Deposit(account="a", amount=7))
        await bus.wait_until_idle()
        assert len(bank.calls) == FAST.max_attempts
        assert await balance(bus.app.store, "a") is None  # type: ignore[arg-type]
        assert bus.published_to("durable.deposited") == []
        assert bus.app.store is not None
        assert await bus.app.store.outbox.pending() == 0
        dead = await bus.broker.get("bank.queue.dlq")
        assert dead is not None
        assert dead.envelope.headers[XH_REASON] == "handler-error"
        await dead.ack()


async def test_the_outbox_is_published_after_commit_and_marked_sent(store_url: str) -> None:
    bank = Bank()
    async with ServiceHarness([bank.service], store=store_url) as bus:
        store = bus.app.store
        assert store is not None
        event = Deposit(account="a", amount=1)
        await bus.publish(event)
        [deposited] = await bus.wait_for(Deposited)
        await bus.wait_until_idle()
        async with store.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT sent_at, attempts, last_error FROM actorbus_outbox ORDER BY id"
            )
        assert len(rows) == 1
        assert rows[0][0] is not None  # marked sent
        assert rows[0][1] == 1
        assert rows[0][2] is None
        assert bus.app.relay is not None
        assert bus.app.relay.sent == 1
        [published] = bus.published_to("durable.deposited")
        assert published.envelope.message_id == deposited.message_id
        assert published.envelope.causation_id == event.message_id


async def test_deliveries_share_commits(store_url: str) -> None:
    bank = Bank()
    count = 200
    async with ServiceHarness([bank.service], store=store_url, timeout=30) as bus:
        store = bus.app.store
        assert store is not None
        before = store.stats()
        messages = [
            bus.app._outgoing.build(Deposit(account=f"a{i % 7}", amount=1)) for i in range(count)
        ]
        await bus.broker.publish_batch(messages)
        await bus.wait_until_idle()
        after = store.stats()
        assert len(bank.calls) == count
        units = after.units - before.units
        commits = after.commits - before.commits
        assert units >= count  # one unit per delivery (plus the relay's)
        # A consumer that waited for each COMMIT before its next delivery would need one
        # COMMIT per delivery at least.
        assert commits < count
        assert after.largest_batch > 1


async def test_store_going_away_delays_deliveries_and_loses_none(tmp_path: Path) -> None:
    bank = Bank()
    url = f"sqlite:///{tmp_path}/bank.sqlite3"
    async with ServiceHarness([bank.service], store=url, timeout=30) as bus:
        store: Any = bus.app.store
        await bus.publish(Deposit(account="a", amount=1))
        await bus.wait_until_idle()
        assert bus.app.is_ready
        with capture_logs() as logs:
            await store._disconnect()  # the file goes away: every statement is unavailable
            for _ in range(5):
                await bus.publish(Deposit(account="b", amount=1))
            await wait_until(lambda: not bus.app.is_ready)
            assert bank.calls == ["a"]  # no handler ran without its transaction
            await store._connect()  # the file is back: the health probe notices
            await wait_until(lambda: bus.app.is_ready)
            await bus.wait_until_idle()
        assert bank.calls == ["a"] + ["b"] * 5
        assert await balance(store, "b") == 5
        assert len(await bus.wait_for(Deposited, count=6)) == 6
        downs = [e for e in logs if e["event"] == "store_unavailable"]
        assert len(downs) == 1  # once per outage, not per delivery
        assert downs[0]["store"] == store.url
        assert [e["event"] for e in logs if e["event"] == "store_recovered"] == ["store_recovered"]


async def test_ctx_tx_without_a_store_says_how_to_get_one() -> None:
    seen: list[str] = []
    service = Service("plain", exchange=EXCHANGE)

    @service.on(Deposit)
    async def handle(event: Deposit, ctx: HandlerContext) -> None:
        try:
            ctx.tx  # noqa: B018 - the access is what is tested
        except ConfigurationError as exc:
            seen.append(str(exc))

    async with ServiceHarness([service]) as bus:
        await bus.publish(Deposit(account="a", amount=1))
        await bus.wait_until_idle()
    assert len(seen) == 1
    assert "ctx.tx is only available to durable services" in seen[0]
    assert "'plain'" in seen[0]
    assert "store=" in seen[0]


async def test_durable_false_keeps_the_in_memory_path(tmp_path: Path) -> None:
    seen: list[bool] = []
    service = Service("plain", exchange=EXCHANGE, durable=False)

    @service.on(Deposit)
    async def handle(event: Deposit, ctx: HandlerContext) -> None:
        seen.append(ctx._tx is not None)

    async with ServiceHarness([service], store=f"sqlite:///{tmp_path}/x.sqlite3") as bus:
        await bus.publish(Deposit(account="a", amount=1))
        await bus.wait_until_idle()
    assert seen == [False]


async def test_durable_true_needs_a_store() -> None:
    with pytest.raises(ConfigurationError, match=r"\['bank'\] are declared durable=True"):
        App([Bank(durable=True).service])


async def test_service_transaction_publishes_through_the_outbox(store_url: str) -> None:
    bank = Bank()
    async with ServiceHarness([bank.service], store=store_url) as bus:
        ctx = bus.app.contexts["bank"]

        async def refused() -> None:
            async with ctx.transaction() as tx:
                await tx.execute("INSERT INTO balances (account, total) VALUES ('x', 1)")
                await tx.publish(Deposited(account="x", total=1))
                raise RuntimeError("refused")

        with pytest.raises(RuntimeError, match="refused"):
            await refused()
        async with ctx.transaction() as tx:
            await tx.execute("INSERT INTO balances (account, total) VALUES ('y', 2)")
            await tx.publish(Deposited(account="y", total=2))
        [published] = await bus.wait_for(Deposited)
        await bus.wait_until_idle()
        assert published.account == "y"
        assert await balance(bus.app.store, "x") is None  # type: ignore[arg-type]
        assert await balance(bus.app.store, "y") == 2  # type: ignore[arg-type]
        assert len(bus.published) == 1


async def test_service_transaction_without_a_store_is_a_configuration_error() -> None:
    async with ServiceHarness([Bank().service]) as bus:
        ctx = bus.app.contexts["bank"]
        with pytest.raises(ConfigurationError, match=r"ctx\.transaction\(\) needs a store"):
            async with ctx.transaction():
                pass  # pragma: no cover


async def test_shutdown_flushes_the_outbox_before_closing_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bank.sqlite3"
    bank = Bank()
    harness = ServiceHarness([bank.service], store=url)
    async with harness as bus:
        assert bus.app.relay is not None
        ctx = bus.app.contexts["bank"]
        async with ctx.transaction() as tx:
            await tx.publish(Deposited(account="z", total=0))
    # Whether the relay got to it while running or on the way out, it was sent before close.
    async with open_store(url) as store:
        assert await store.outbox.pending() == 0
    assert len(harness.published_to("durable.deposited")) == 1


@pytest.fixture
def own_cluster() -> Any:
    """A PostgreSQL cluster of this test's own, since the test crashes it."""
    from actorbus.testing._postgres import PostgresCluster, find_postgres_bin

    if find_postgres_bin() is None:
        pytest.skip("needs the postgresql server binaries")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_going_away_delays_deliveries_and_loses_none(own_cluster: Any) -> None:
    bank = Bank()
    url = f"{own_cluster.url}&connect_timeout=3".replace("&", "?", 1)
    async with ServiceHarness([bank.service], store=url, timeout=60) as bus:
        store: Any = bus.app.store
        await bus.publish(Deposit(account="a", amount=1))
        await bus.wait_until_idle()
        await anyio.to_thread.run_sync(own_cluster.crash)
        for _ in range(5):
            await bus.publish(Deposit(account="b", amount=1))
        await wait_until(lambda: not bus.app.is_ready, timeout=30)
        assert bank.calls == ["a"]
        await anyio.to_thread.run_sync(own_cluster.start)
        await wait_until(lambda: bus.app.is_ready, timeout=30)
        await bus.wait_until_idle()
        assert bank.calls == ["a"] + ["b"] * 5
        assert await balance(store, "b") == 5
        assert len(await bus.wait_for(Deposited, count=6)) == 6
        assert own_cluster.password not in str(store.url)


async def test_a_relay_frees_at_once_the_rows_of_a_relay_that_died_on_this_host(
    tmp_path: Path,
) -> None:
    """A killed relay's claimed rows go out when the next relay starts, not after the lease."""
    proc = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    dead_pid = int(proc.stdout)  # exited and reaped: its pid names no process (or another one)
    dead_owner = f"{host_key()}|{dead_pid}|1|abcdef"
    assert owner_dead(dead_owner)
    assert not owner_dead(relay_owner())  # this process
    assert not owner_dead("other-host/boot|1|1|abcdef")  # cannot be told: wait for the lease
    assert not owner_dead("host:1:abcdef")  # a name of the old shape

    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    bank = Bank()
    async with open_store(url) as store:
        async with store.transaction() as tx:
            event = Deposited(account="a", total=3)
            body = msgspec.json.encode(event)
            envelope = Envelope(
                routing_key="durable.deposited",
                message_id=event.message_id,
                type="durable.deposited",
            )
            await tx.outbox.add(EXCHANGE, envelope, body)
        assert len(await store.outbox.claim(dead_owner, lease=3600)) == 1
    async with ServiceHarness([bank.service], store=url) as bus:
        with anyio.fail_after(10):
            [published] = await bus.wait_for(Deposited)
        assert published.message_id == event.message_id
        assert bus.app.store is not None
        assert await bus.app.store.outbox.pending() == 0
