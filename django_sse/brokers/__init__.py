"""Brokers: where events are published and kept (``base`` is the contract, ``runtime`` picks one)."""

from .base import Broker, BrokerListener, History, Message

__all__ = ["Broker", "BrokerListener", "History", "Message"]
