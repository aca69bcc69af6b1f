"""What a supervision tree is made of: restart strategies and the specs of children and supervisors.

Plain, validated values; :mod:`._supervisor` runs them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from actorbus.exceptions import ConfigurationError

from .._backoff import Backoff, is_count
from ._actor import Actor

__all__ = ("ChildSpec", "Restart", "RestartStrategy", "SupervisorSpec")


class RestartStrategy(enum.Enum):
    """Which children a supervisor restarts when one of them fails."""

    ONE_FOR_ONE = "one_for_one"
    """Restart only the failed child."""
    ONE_FOR_ALL = "one_for_all"
    """Stop all other children, then restart them all."""
    REST_FOR_ONE = "rest_for_one"
    """Stop the children started after the failed one, then restart it and them."""


class Restart(enum.Enum):
    """When a child is restarted (OTP restart types)."""

    PERMANENT = "permanent"
    """Always restarted."""
    TRANSIENT = "transient"
    """Restarted only when it failed, not when it stopped normally."""
    TEMPORARY = "temporary"
    """Never restarted; removed when it ends, even when a sibling's failure stopped it."""


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{kind} name must be a non-empty string, got {name!r}")


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start and restart one actor under a supervisor.

    Args:
        name: Unique among the supervisor's children.
        factory: Called to create a fresh :class:`Actor` at each (re)start.
        mailbox_size: The bounded mailbox's capacity; the mailbox survives restarts.
        restart: When the actor is restarted.
        shutdown: Seconds an actor gets to finish its current message when its supervisor
            stops it for a restart or on giving up, before it is cancelled; ``None`` waits.

    Raises:
        ConfigurationError: If a value is invalid.
    """

    name: str
    factory: Callable[[], Actor]
    mailbox_size: int = 1000
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = 5.0

    def __post_init__(self) -> None:
        _check_name("child", self.name)
        if not callable(self.factory):
            raise ConfigurationError(
                f"factory of child {self.name!r} must be callable (e.g. the Actor subclass), "
                f"got {self.factory!r}"
            )
        size = self.mailbox_size
        if not is_count(size, minimum=1):
            raise ConfigurationError(
                f"mailbox_size of child {self.name!r} must be a positive integer, got {size!r}"
            )
        if not isinstance(self.restart, Restart):
            raise ConfigurationError(
                f"restart of child {self.name!r} must be a Restart, got {self.restart!r}"
            )
        if self.shutdown is not None and not self.shutdown >= 0:
            raise ConfigurationError(
                f"shutdown of child {self.name!r} must be >= 0 seconds or None, "
                f"got {self.shutdown!r}"
            )


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """A supervisor and its children, started in order and stopped in reverse order.

    Restart intensity works as in OTP: more than ``max_restarts`` restarts within ``within``
    seconds make the supervisor give up. It then stops all its children and fails; its parent
    treats that like a failed child, and at the top the :class:`ActorSystem` fails with
    ``SupervisorGaveUpError``.

    Args:
        name: Unique among its siblings (or among the system's top-level supervisors).
        children: Actors and nested supervisors, in start order.
        strategy: Which children to restart when one fails.
        max_restarts: Restarts allowed within ``within`` seconds.
        within: The sliding window for ``max_restarts``, in seconds of the system's clock.
        backoff: The delay before restarting a child that keeps failing; the attempt number
            is how often that child was restarted within ``within``.
        restart: When this supervisor is restarted by its parent.

    Raises:
        ConfigurationError: If a value is invalid or two children share a name.
    """

    name: str
    children: Sequence[ChildSpec | SupervisorSpec] = ()
    strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    restart: Restart = Restart.PERMANENT

    def __post_init__(self) -> None:
        _check_name("supervisor", self.name)
        children = tuple(self.children)
        object.__setattr__(self, "children", children)
        seen: set[str] = set()
        for child in children:
            if not isinstance(child, ChildSpec | SupervisorSpec):
                raise ConfigurationError(
                    f"children of supervisor {self.name!r} must be ChildSpec or "
                    f"SupervisorSpec, got {child!r}"
                )
            if child.name in seen:
                raise ConfigurationError(
                    f"supervisor {self.name!r} has two children named {child.name!r}; "
                    "child names must be unique under one supervisor"
                )
            seen.add(child.name)
        if not isinstance(self.strategy, RestartStrategy):
            raise ConfigurationError(
                f"strategy of supervisor {self.name!r} must be a RestartStrategy, "
                f"got {self.strategy!r}"
            )
        restarts = self.max_restarts
        if not is_count(restarts, minimum=0):
            raise ConfigurationError(
                f"max_restarts of supervisor {self.name!r} must be an integer >= 0, "
                f"got {restarts!r}"
            )
        if not (self.within > 0 and math.isfinite(self.within)):
            raise ConfigurationError(
                f"within of supervisor {self.name!r} must be a positive number of seconds, "
                f"got {self.within!r}"
            )
