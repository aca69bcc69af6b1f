"""The AsyncAPI document of a NATS deployment names what the NATS broker really declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from actorbus import App
from actorbus.brokers import nats_subjects
from actorbus.brokers.nats import NatsBroker
from actorbus.describe import build_asyncapi
from tests.unit.cli._shop import services as shop_services

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_every_receive_operation_names_a_consumer_of_its_channels_subject(
    nats_url: str, tmp_path: Path
) -> None:
    services = shop_services()
    document = build_asyncapi(services, server=nats_url)
    async with App(services, broker=nats_url, data_dir=tmp_path) as app:
        broker = app.broker
        assert isinstance(broker, NatsBroker)
        checked = 0
        for name, operation in document["operations"].items():
            if operation["action"] != "receive":
                continue
            channel = document["channels"][operation["channel"]["$ref"].rpartition("/")[2]]
            subject = channel["address"]
            stream = channel.get("x-nats-stream") or nats_subjects.DIRECT_STREAM
            consumer = operation["bindings"]["nats"]["queue"]
            info = await broker.js.consumer_info(stream, consumer)
            assert info.config.filter_subject == subject, name
            assert info.config.durable_name == consumer, name
            checked += 1
        assert checked >= 5
        # and the stream of every routed channel holds its subject
        for channel in document["channels"].values():
            if "x-nats-stream" in channel:
                stream = await broker.js.stream_info(channel["x-nats-stream"])
                prefix = stream.config.subjects[0].removesuffix(">")
                assert channel["address"].startswith(prefix), channel
