"""Backoff schedule: exponential, capped, jittered, validated."""

from __future__ import annotations

import random

import pytest

from actorbus.exceptions import ConfigurationError
from actorbus.runtime import Backoff


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (9, 25.6), (10, 30.0), (11, 30.0), (10_000, 30.0)],
)
def test_delay_table_without_jitter(attempt: int, expected: float) -> None:
    assert Backoff(jitter=0.0).delay(attempt) == pytest.approx(expected)


def test_jitter_stays_within_fraction_and_varies() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.25)
    rng = random.Random(42)
    delays = [backoff.delay(3, rng) for _ in range(200)]
    assert all(3.0 <= d <= 5.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # it really jitters


def test_jitter_applies_to_the_capped_value() -> None:
    backoff = Backoff(initial=1.0, factor=10.0, maximum=2.0, jitter=0.5)
    rng = random.Random(1)
    assert all(1.0 <= backoff.delay(5, rng) <= 3.0 for _ in range(100))


def test_seeded_rng_is_reproducible() -> None:
    backoff = Backoff()
    assert backoff.delay(2, random.Random(7)) == backoff.delay(2, random.Random(7))


def test_zero_initial_gives_zero_delays() -> None:
    assert Backoff(initial=0.0, maximum=0.0).delay(5) == 0.0


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="counts attempts from 1, got 0"):
        Backoff().delay(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -1.0}, "initial must be a finite number >= 0, got -1.0"),
        ({"factor": 0.5}, "factor must be a finite number >= 1, got 0.5"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum must be >= initial, got 1.0"),
        ({"jitter": 1.0}, r"jitter must be in \[0, 1\), got 1.0"),
    ],
)
def test_invalid_values_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Backoff(**kwargs)


def test_zero_initial_delay_stays_zero_however_many_attempts() -> None:
    # 2.0 ** 1024 overflows a float; that must not turn "no delay" into the maximum.
    assert Backoff(initial=0.0, factor=2.0, maximum=30.0).delay(5000) == 0.0


def test_delays_counts_attempts_from_one_per_schedule() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, maximum=5.0, jitter=0.0)
    first = backoff.delays()
    assert [first() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delays()() == 1.0  # a new schedule starts again


def test_reconnect_backoff_waits_between_half_and_all_of_the_doubling_delay() -> None:
    from actorbus.brokers.amqp._connection import reconnect_backoff

    rng = random.Random(7)
    backoff = reconnect_backoff(0.1, 1.0)
    for attempt in range(1, 12):
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        for _ in range(50):
            assert ceiling / 2 - 1e-9 <= backoff.delay(attempt, rng) <= ceiling + 1e-9
