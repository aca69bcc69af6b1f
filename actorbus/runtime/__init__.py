"""Actors, mailboxes and supervision on anyio; knows nothing of brokers or codecs."""

from __future__ import annotations

from .._backoff import Backoff as Backoff
from ._actor import Actor as Actor
from ._actor import ActorRef as ActorRef
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._spec import ChildSpec as ChildSpec
from ._spec import Restart as Restart
from ._spec import RestartStrategy as RestartStrategy
from ._spec import SupervisorSpec as SupervisorSpec
from ._supervisor import ChildStatus as ChildStatus
from ._supervisor import SupervisorRef as SupervisorRef
from ._system import ActorSystem as ActorSystem

Supervisor = SupervisorSpec
"""Alias of :class:`SupervisorSpec`, the name used in ``actorbus``'s top-level API."""

__all__ = (
    "Actor",
    "ActorRef",
    "ActorSystem",
    "Backoff",
    "ChildSpec",
    "ChildStatus",
    "MailboxStatistics",
    "Restart",
    "RestartStrategy",
    "Supervisor",
    "SupervisorRef",
    "SupervisorSpec",
)
