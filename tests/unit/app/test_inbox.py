"""MemoryInbox: per-consumer ids, what their handling published, bounded by capacity."""

from __future__ import annotations

import pytest

from actorbus.app import MemoryInbox
from actorbus.brokers import OutboundMessage
from actorbus.messages import Envelope

pytestmark = pytest.mark.anyio


def _out(message_id: str) -> OutboundMessage:
    return OutboundMessage("events", Envelope(message_id, "thing.done", "thing.done"), b"{}")


async def test_remembers_what_handling_published_per_consumer() -> None:
    inbox = MemoryInbox()
    published = [_out("child-1"), _out("child-2")]
    await inbox.record("a:q", "m-1", published)
    assert await inbox.lookup("a:q", "m-1") == tuple(published)
    assert await inbox.lookup("b:q", "m-1") is None  # another consumer never handled it
    assert inbox.lookup_nowait("a:q", "m-2") is None
    inbox.record_nowait("a:q", "m-2", [])
    assert inbox.lookup_nowait("a:q", "m-2") == ()  # handled, published nothing
    assert len(inbox) == 2


async def test_forgets_the_oldest_ids_beyond_its_capacity() -> None:
    inbox = MemoryInbox(capacity=3)
    for i in range(5):
        inbox.record_nowait("c", f"m-{i}", [])
    assert len(inbox) == 3
    assert [inbox.lookup_nowait("c", f"m-{i}") for i in range(5)] == [None, None, (), (), ()]


async def test_recording_an_id_again_does_not_shorten_its_memory() -> None:
    inbox = MemoryInbox(capacity=2)
    inbox.record_nowait("c", "m-0", [])
    inbox.record_nowait("c", "m-0", [_out("x")])  # e.g. two consumers of one name raced
    inbox.record_nowait("c", "m-1", [])
    assert len(inbox) == 2
    assert inbox.lookup_nowait("c", "m-0") == (_out("x"),)
    inbox.record_nowait("c", "m-2", [])
    assert inbox.lookup_nowait("c", "m-0") is None
    assert inbox.lookup_nowait("c", "m-1") == ()
