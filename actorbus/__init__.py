"""actorbus: supervised asyncio actors for event-driven microservices on pluggable brokers.

Layers, from the top: ``cli`` → ``app`` (services, pipelines, HTTP) → ``runtime`` (actors,
supervision; knows no broker) / ``brokers`` (memory, amqp; know no actor) / ``messages``
(msgspec types, codec, versions). ``exceptions`` is importable from everywhere.
"""

from __future__ import annotations

from . import exceptions as exceptions
from ._version import __version__ as __version__
from .app import App as App
from .app import HandlerContext as HandlerContext
from .app import RetryPolicy as RetryPolicy
from .app import Saga as Saga
from .app import Service as Service
from .app import ServiceContext as ServiceContext
from .brokers import Broker as Broker
from .brokers import Delivery as Delivery
from .brokers import connect as connect
from .exceptions import ActorbusError as ActorbusError
from .exceptions import RejectMessage as RejectMessage
from .exceptions import RetryLater as RetryLater
from .messages import Command as Command
from .messages import Envelope as Envelope
from .messages import Event as Event
from .messages import Message as Message
from .runtime import Actor as Actor
from .runtime import ActorRef as ActorRef
from .runtime import ActorSystem as ActorSystem
from .runtime import ChildSpec as ChildSpec
from .runtime import RestartStrategy as RestartStrategy
from .runtime import SupervisorSpec as SupervisorSpec

__all__ = (
    "Actor",
    "ActorRef",
    "ActorSystem",
    "ActorbusError",
    "App",
    "Broker",
    "ChildSpec",
    "Command",
    "Delivery",
    "Envelope",
    "Event",
    "HandlerContext",
    "Message",
    "RejectMessage",
    "RestartStrategy",
    "RetryLater",
    "RetryPolicy",
    "Saga",
    "Service",
    "ServiceContext",
    "SupervisorSpec",
    "connect",
    "exceptions",
)
