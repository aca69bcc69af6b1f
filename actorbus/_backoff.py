"""A pure backoff schedule: exponential growth, a cap, and jitter.

The one backoff of actorbus, at the bottom of the package so that every layer can use it:
supervisors (restart delays), retry policies (redelivery delays) and brokers (reconnection).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .exceptions import ConfigurationError

__all__ = ("Backoff", "is_count")


@dataclass(frozen=True, slots=True)
class Backoff:
    """An exponential backoff schedule with a cap and symmetric jitter.

    Attempt ``n`` waits ``min(maximum, initial * factor ** (n - 1))`` seconds, then that value is
    scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so that many restarting actors do
    not retry in lockstep.

    Args:
        initial: The delay of the first attempt, in seconds.
        factor: The growth per attempt (at least 1).
        maximum: The cap applied before jitter.
        jitter: The jitter fraction, in ``[0, 1)``; 0 gives an exact schedule.

    Raises:
        ConfigurationError: If a value is out of range.
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.initial) and self.initial >= 0):
            problems.append(f"initial must be a finite number >= 0, got {self.initial!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            problems.append(f"factor must be a finite number >= 1, got {self.factor!r}")
        if not (self.maximum >= self.initial):  # also rejects NaN
            problems.append(f"maximum must be >= initial, got {self.maximum!r}")
        if not (0 <= self.jitter < 1):
            problems.append(f"jitter must be in [0, 1), got {self.jitter!r}")
        if problems:
            raise ConfigurationError("invalid Backoff: " + "; ".join(problems))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the delay before ``attempt``, in seconds.

        Args:
            attempt: 1 for the first retry, 2 for the second, and so on.
            rng: The random source for jitter; the ``random`` module's when omitted.

        Raises:
            ValueError: If ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError(f"Backoff.delay() counts attempts from 1, got {attempt!r}")
        if not self.initial:
            return 0.0
        try:
            base = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        except OverflowError:  # factor ** attempt beyond a float: long past the maximum
            base = self.maximum
        if not self.jitter or not base:
            return base
        spread = rng.uniform(-1.0, 1.0) if rng is not None else random.uniform(-1.0, 1.0)
        return base * (1.0 + self.jitter * spread)

    def delays(self, rng: random.Random | None = None) -> Callable[[], float]:
        """Return a function giving the delay of attempt 1, 2, 3, … on successive calls.

        For loops that retry until they succeed (reconnecting to a broker): each call is the
        next attempt; a new function starts again from the first.
        """
        attempt = 0

        def next_delay() -> float:
            nonlocal attempt
            attempt = min(attempt + 1, 64)  # past the cap long before; keeps the int small
            return self.delay(attempt, rng)

        return next_delay


def is_count(value: object, *, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
