"""Upcasters: registration rules and chain composition."""

from __future__ import annotations

import pytest

from actorbus.exceptions import ConfigurationError
from actorbus.messages import Event
from actorbus.messages._upcast import Upcasters

from ._types import (
    OrderCreated,
    OrderCreatedV2,
    ParcelShipped,
    ParcelShippedV2,
    ParcelShippedV3,
    order_created_to_v2,
    parcel_v1_to_v2,
    parcel_v2_to_v3,
)


@pytest.fixture
def upcasters() -> Upcasters:
    upcasters = Upcasters()
    upcasters.add(ParcelShipped, ParcelShippedV2, parcel_v1_to_v2)
    upcasters.add(ParcelShippedV2, ParcelShippedV3, parcel_v2_to_v3)
    return upcasters


def test_path_and_next(upcasters: Upcasters) -> None:
    assert upcasters.next_of(ParcelShipped) is ParcelShippedV2
    assert upcasters.next_of(ParcelShippedV3) is None
    assert upcasters.path(ParcelShipped, ParcelShippedV3) == [
        ParcelShipped,
        ParcelShippedV2,
        ParcelShippedV3,
    ]
    assert upcasters.path(ParcelShippedV3, ParcelShippedV3) == [ParcelShippedV3]
    assert upcasters.path(ParcelShippedV3, ParcelShipped) is None
    assert upcasters.path(OrderCreated, ParcelShippedV3) is None


def test_chain_of_one_step(upcasters: Upcasters) -> None:
    chain = upcasters.chain(ParcelShippedV2, ParcelShippedV3)
    assert chain is not None
    result = chain(ParcelShippedV2(parcel_id="p", carrier="c"))
    assert isinstance(result, ParcelShippedV3)
    assert result.tracking_url == "https://track.example/c/p"


def test_chain_composes_steps_in_order(upcasters: Upcasters) -> None:
    chain = upcasters.chain(ParcelShipped, ParcelShippedV3)
    assert chain is not None
    original = ParcelShipped(parcel_id="p")
    result = chain(original)
    assert isinstance(result, ParcelShippedV3)
    assert (result.carrier, result.tracking_url) == ("post", "https://track.example/post/p")
    assert (result.event_id, result.occurred_at) == (original.event_id, original.occurred_at)


def test_chain_to_itself_is_none(upcasters: Upcasters) -> None:
    assert upcasters.chain(ParcelShippedV2, ParcelShippedV2) is None


def test_chain_without_path_is_a_configuration_error(upcasters: Upcasters) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"no upcaster chain from OrderCreated \(order.created v1\) to ParcelShippedV3 "
        r"\(parcel.shipped v3\); add one with registry.add_upcaster",
    ):
        upcasters.chain(OrderCreated, ParcelShippedV3)


def test_second_upcaster_for_a_type_is_refused(upcasters: Upcasters) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"ParcelShipped \(parcel.shipped v1\) already has an upcaster to ParcelShippedV2",
    ):
        upcasters.add(ParcelShipped, ParcelShippedV3, lambda m: m)


@pytest.mark.parametrize(
    ("from_type", "to_type"),
    [(OrderCreatedV2, OrderCreated), (ParcelShippedV2, ParcelShippedV2)],
)
def test_upcaster_must_raise_the_version(from_type: type, to_type: type) -> None:
    with pytest.raises(ConfigurationError, match=r"does not raise the version"):
        Upcasters().add(from_type, to_type, order_created_to_v2)


def test_upcaster_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match=r"upcaster for OrderCreated .* is not callable"):
        Upcasters().add(OrderCreated, OrderCreatedV2, "nope")  # type: ignore[arg-type]


def test_upcaster_types_must_be_concrete_messages() -> None:
    class Abstract(Event):
        pass

    for bad in (Abstract, dict):
        with pytest.raises(ConfigurationError, match=r"upcasters connect concrete message types"):
            Upcasters().add(bad, OrderCreatedV2, order_created_to_v2)  # type: ignore[arg-type]
