"""Brokers: the broker protocol, ``connect(url)``, dead letters, and the built-in transports.

``memory://`` (:mod:`actorbus.brokers.memory`) and ``amqp://`` / ``amqps://``
(:mod:`actorbus.brokers.amqp`) are imported only when a URL with their scheme is connected.
"""

from __future__ import annotations

from ._deadletter import BROKER_DEATH_HEADERS as BROKER_DEATH_HEADERS
from ._deadletter import DEATH_HEADERS as DEATH_HEADERS
from ._deadletter import REASON_DECODE_ERROR as REASON_DECODE_ERROR
from ._deadletter import REASON_DELIVERY_LIMIT as REASON_DELIVERY_LIMIT
from ._deadletter import REASON_HANDLER_ERROR as REASON_HANDLER_ERROR
from ._deadletter import REASON_MAXLEN as REASON_MAXLEN
from ._deadletter import REASON_MESSAGE_TOO_LARGE as REASON_MESSAGE_TOO_LARGE
from ._deadletter import REASON_REJECTED as REASON_REJECTED
from ._deadletter import XH_ATTEMPT as XH_ATTEMPT
from ._deadletter import XH_ATTEMPTS as XH_ATTEMPTS
from ._deadletter import XH_ERROR_MESSAGE as XH_ERROR_MESSAGE
from ._deadletter import XH_ERROR_TYPE as XH_ERROR_TYPE
from ._deadletter import XH_ORIGINAL_EXCHANGE as XH_ORIGINAL_EXCHANGE
from ._deadletter import XH_ORIGINAL_QUEUE as XH_ORIGINAL_QUEUE
from ._deadletter import XH_ORIGINAL_ROUTING_KEY as XH_ORIGINAL_ROUTING_KEY
from ._deadletter import XH_REASON as XH_REASON
from ._deadletter import XH_REPLAY as XH_REPLAY
from ._deadletter import DeadLetter as DeadLetter
from ._deadletter import dead_letter_count as dead_letter_count
from ._deadletter import dead_letter_queue as dead_letter_queue
from ._deadletter import describe_dead_letter as describe_dead_letter
from ._deadletter import peek_dead_letters as peek_dead_letters
from ._deadletter import purge_dead_letters as purge_dead_letters
from ._deadletter import replay_dead_letters as replay_dead_letters
from ._protocol import DEFAULT_EXCHANGE as DEFAULT_EXCHANGE
from ._protocol import DEFAULT_RETRY_DELAYS as DEFAULT_RETRY_DELAYS
from ._protocol import REPLY_ADDRESS_PREFIX as REPLY_ADDRESS_PREFIX
from ._protocol import Binding as Binding
from ._protocol import Broker as Broker
from ._protocol import Delivery as Delivery
from ._protocol import DeliveryCallback as DeliveryCallback
from ._protocol import ExchangeSpec as ExchangeSpec
from ._protocol import ExchangeType as ExchangeType
from ._protocol import OutboundMessage as OutboundMessage
from ._protocol import QueueSpec as QueueSpec
from ._protocol import QueueType as QueueType
from ._protocol import ReplyCallback as ReplyCallback
from ._protocol import ReplyChannel as ReplyChannel
from ._protocol import ReplyChannels as ReplyChannels
from ._protocol import Subscription as Subscription
from ._protocol import Topology as Topology
from ._protocol import nearest_tier as nearest_tier
from ._registry import BrokerFactory as BrokerFactory
from ._registry import connect as connect
from ._registry import known_schemes as known_schemes
from ._registry import register_broker as register_broker
from ._url import redact as redact

__all__ = (
    "BROKER_DEATH_HEADERS",
    "DEATH_HEADERS",
    "REASON_DECODE_ERROR",
    "REASON_DELIVERY_LIMIT",
    "REASON_HANDLER_ERROR",
    "REASON_MAXLEN",
    "REASON_MESSAGE_TOO_LARGE",
    "REASON_REJECTED",
    "DEFAULT_EXCHANGE",
    "DEFAULT_RETRY_DELAYS",
    "XH_ATTEMPT",
    "XH_ATTEMPTS",
    "XH_ERROR_MESSAGE",
    "XH_ERROR_TYPE",
    "XH_ORIGINAL_EXCHANGE",
    "XH_ORIGINAL_QUEUE",
    "XH_ORIGINAL_ROUTING_KEY",
    "XH_REASON",
    "XH_REPLAY",
    "Binding",
    "DeadLetter",
    "Broker",
    "BrokerFactory",
    "Delivery",
    "DeliveryCallback",
    "ExchangeSpec",
    "ExchangeType",
    "OutboundMessage",
    "QueueSpec",
    "QueueType",
    "REPLY_ADDRESS_PREFIX",
    "ReplyCallback",
    "ReplyChannel",
    "ReplyChannels",
    "Subscription",
    "Topology",
    "nearest_tier",
    "connect",
    "dead_letter_count",
    "dead_letter_queue",
    "describe_dead_letter",
    "peek_dead_letters",
    "purge_dead_letters",
    "replay_dead_letters",
    "known_schemes",
    "register_broker",
    "redact",
)
