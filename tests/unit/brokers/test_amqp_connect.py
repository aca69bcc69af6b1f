"""Connecting to something that is not a working RabbitMQ: the error says what happened."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketStream

from actorbus.brokers.amqp import AmqpBroker
from actorbus.exceptions import BrokerConnectionError
from actorbus.testing import capture_logs

pytestmark = pytest.mark.anyio


async def test_a_server_that_accepts_but_never_answers_names_what_timed_out() -> None:
    async def silent(stream: SocketStream) -> None:
        async with stream:  # accept, then say nothing
            await anyio.sleep_forever()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, silent)
            url = f"amqp://guest:s3cret@127.0.0.1:{port}/"
            with capture_logs() as logs, pytest.raises(BrokerConnectionError) as caught:
                async with AmqpBroker(url, connect_timeout=0.3):
                    pass  # pragma: no cover
            tg.cancel_scope.cancel()
    text = str(caught.value)
    assert "no answer within 0.3 s (TCP connect and AMQP handshake" in text
    assert text.count(f"127.0.0.1:{port}") == 1  # the URL once, not repeated per endpoint
    assert "s3cret" not in text
    connecting = [e for e in logs if e["event"] == "amqp_connecting"]
    assert connecting
    assert connecting[0]["url"] == f"amqp://guest:***@127.0.0.1:{port}/"
