"""Which broker class the settings select: the one place that maps a name to a class.

``SSE_BROKER`` names a broker (None: ``"redis"`` when a Redis URL or
sentinels are set, else ``"memory"``; see ``conf.Settings.broker_name``); a
topology setting may then pick a variant of it (``SSE_REDIS_CLUSTER``).
A new broker is one entry in ``BROKERS`` and, when
``SSE_BROKER`` should accept its name, one in ``NAMES``; its class builds
itself (``from_settings``) and checks its own settings (``check``).
"""

from __future__ import annotations

from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import Settings
from .base import Broker

#: The values ``SSE_BROKER`` accepts (besides None).
NAMES = ("memory", "redis", "postgres")

#: Each broker's class, as a dotted path imported on first use (a broker's
#: client library is needed only when it is selected or checked).
BROKERS: dict[str, str] = {
    "memory": "django_sse.brokers.memory.MemoryBroker",
    "redis": "django_sse.brokers.redis.broker.RedisBroker",
    "redis-cluster": "django_sse.brokers.redis.cluster.RedisClusterBroker",
    "postgres": "django_sse.brokers.postgres.broker.PostgresBroker",
}


def selected_name(settings: Settings) -> str:
    """Return the key of ``BROKERS`` that the settings select (it may be unknown: ``check_selection``)."""
    name = settings.broker_name
    if name == "redis" and settings.SSE_REDIS_CLUSTER is True:
        return "redis-cluster"
    return name


def check_selection(settings: Settings) -> list[CheckMessage]:
    """Return ``django_sse.E020`` when ``SSE_BROKER`` names no broker."""
    broker = settings.raw("SSE_BROKER")
    if broker is None or broker in NAMES:
        return []
    choices = ", ".join(repr(name) for name in reversed(NAMES))
    return [
        Error(
            f"SSE_BROKER is {broker!r}, which is not valid.",
            hint=f"Set SSE_BROKER to {choices}, or None (redis when SSE_REDIS_URL is set).",
            id="django_sse.E020",
        )
    ]


def broker_classes() -> list[type[Broker]]:
    """Return every registered broker class, in the order of ``BROKERS``."""
    return [import_string(path) for path in BROKERS.values()]


def broker_class(settings: Settings) -> type[Broker]:
    """Return the broker class the settings select; raise ``ImproperlyConfigured`` (E020) if none."""
    _raise_on_errors(check_selection(settings))
    cls: type[Broker] = import_string(BROKERS[selected_name(settings)])
    return cls


def build_broker(settings: Settings) -> Broker:
    """Return a new broker of the selected class, connecting to nothing yet.

    Raises ``ImproperlyConfigured`` with the errors of the class's own
    ``check()`` (the messages ``manage.py check`` shows), so a process that
    skipped the system checks learns the same thing at its first stream.
    """
    cls = broker_class(settings)
    _raise_on_errors(cls.check(settings))
    return cls.from_settings(settings)


def _raise_on_errors(messages: list[CheckMessage]) -> None:
    errors = [message for message in messages if message.is_serious()]
    if errors:
        raise ImproperlyConfigured("\n".join(str(message) for message in errors))
