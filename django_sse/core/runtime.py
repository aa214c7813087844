"""The process-wide objects: the broker built from settings, its hub, and the stream registry.

Built on first use and again after a fork (gunicorn workers start afresh);
``reset()`` closes them, and ``AppConfig.ready()`` connects it to
``setting_changed`` so that tests overriding ``SSE_*`` settings get new
ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

from ..brokers.base import Broker
from ..conf import sse_settings
from ..presence import PresenceReporter
from .concurrency import new_rlock
from .hub import Hub
from .registry import StreamRegistry

if TYPE_CHECKING:
    from ..brokers.redis.sentinel import SentinelMaster

T = TypeVar("T")

#: The streams this process serves (counted for SSE_MAX_STREAMS, ended together at shutdown).
streams = StreamRegistry()

#: The master's URL with Sentinel when SSE_REDIS_URL is not set: database 0, no password, no TLS.
SENTINEL_DEFAULT_URL = "redis://sentinel-managed/0"

_lock = new_rlock()
_state: dict[str, Any] = {}


def build_broker() -> Broker:
    """Return a new broker as the settings describe it."""
    name = sse_settings.broker_name
    if name == "redis":
        from ..brokers.redis.broker import RedisBroker
        from ..brokers.redis.cluster import RedisClusterBroker

        url = sse_settings.redis_url
        sentinels = sse_settings.SSE_REDIS_SENTINELS
        if not url and not sentinels:
            raise ImproperlyConfigured(
                "SSE_BROKER is 'redis' but no Redis is configured: set SSE_REDIS_URL."
            )
        if sse_settings.SSE_REDIS_CLUSTER:
            if not url:
                raise ImproperlyConfigured(
                    "SSE_REDIS_CLUSTER is True but SSE_REDIS_URL is not set: set it to a "
                    "node of the cluster, e.g. 'redis://node-1:6379/0'."
                )
            return RedisClusterBroker(
                url,
                prefix=sse_settings.SSE_REDIS_PREFIX,
                timeout=sse_settings.SSE_PUBLISH_TIMEOUT,
                maxlen=sse_settings.SSE_HISTORY_MAXLEN,
                ttl=sse_settings.SSE_HISTORY_TTL,
            )
        url = url or SENTINEL_DEFAULT_URL
        return RedisBroker(
            url,
            prefix=sse_settings.SSE_REDIS_PREFIX,
            timeout=sse_settings.SSE_PUBLISH_TIMEOUT,
            maxlen=sse_settings.SSE_HISTORY_MAXLEN,
            ttl=sse_settings.SSE_HISTORY_TTL,
            master=_sentinel_master(url),
            replicas=sse_settings.SSE_PUBLISH_REPLICAS,
        )
    from ..brokers.memory import MemoryBroker

    return MemoryBroker(maxlen=sse_settings.SSE_HISTORY_MAXLEN, ttl=sse_settings.SSE_HISTORY_TTL)


def _sentinel_master(url: str) -> SentinelMaster | None:
    """Return how to find the master when SSE_REDIS_SENTINELS is set, else None."""
    sentinels = sse_settings.SSE_REDIS_SENTINELS
    if not sentinels:
        return None
    from ..brokers.redis.sentinel import SentinelMaster, sentinel_tls  # noqa: F811 (at run time)
    from ..brokers.redis.url import parse_sentinel

    return SentinelMaster(
        [parse_sentinel(entry) for entry in sentinels],
        sse_settings.SSE_REDIS_SENTINEL_SERVICE,
        timeout=sse_settings.SSE_PUBLISH_TIMEOUT,
        password=sse_settings.SSE_REDIS_SENTINEL_PASSWORD,
        ssl=sentinel_tls(url),
    )


def _get(key: str, build: Callable[[], T]) -> T:
    state = _state
    if state.get("pid") != os.getpid():  # forked (gunicorn): start afresh in the child
        with _lock:
            if state.get("pid") != os.getpid():
                state.clear()
                state["pid"] = os.getpid()
    value = state.get(key)
    if value is None:
        with _lock:
            value = state.get(key)
            if value is None:
                value = state[key] = build()
    return value


def get_broker() -> Broker:
    """Return this process's broker (publishing never starts the subscriber)."""
    return _get("broker", build_broker)


#: Threads of the executor ``asend_event`` publishes on (the broker's calls block).
PUBLISH_THREADS = 4


def get_publisher() -> ThreadPoolExecutor:
    """Return this process's publishing executor (``asend_event``), starting it on first use."""
    return _get("publisher", _start_publisher)


def _start_publisher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(PUBLISH_THREADS, thread_name_prefix="django-sse-publish")


def get_hub() -> Hub:
    """Return this process's hub, starting the broker's subscriber and the presence reports on first use."""
    return _get("hub", _start_hub)


def _start_hub() -> Hub:
    hub = Hub(get_broker())
    _state["presence"] = PresenceReporter(hub, streams.__len__, sse_settings.SSE_PRESENCE_INTERVAL)
    return hub


def presence_reporter() -> PresenceReporter | None:
    """Return the task that reports this process's streams, or None before its hub starts."""
    state = _state
    if state.get("pid") != os.getpid():
        return None
    reporter: PresenceReporter | None = state.get("presence")
    return reporter


def reset() -> None:
    """Close and forget the broker and hub and stop the presence reports (settings changed, or a test finished)."""
    with _lock:
        hub, broker = _state.get("hub"), _state.get("broker")
        reporter = _state.get("presence")
        publisher = _state.get("publisher")
        _state.clear()
    if publisher is not None:
        publisher.shutdown(wait=False)
    if reporter is not None:
        reporter.stop()
    if hub is not None:
        hub.close()
    elif broker is not None:
        broker.close()


def on_setting_changed(setting: str, **kwargs: object) -> None:
    """``setting_changed`` receiver: rebuild the broker and hub after an ``SSE_*`` change."""
    if setting.startswith("SSE_") or setting.startswith("REDIS_SSEQUEUE_"):
        reset()
