"""The broker and hub of this process, built from settings on first use."""

from __future__ import annotations

import os
import threading

from django.core.signals import setting_changed

from ..conf import sse_settings
from ..exceptions import BrokerNotShared
from .base import Broker, History, Message

__all__ = ["Broker", "History", "Message", "get_broker", "get_hub", "reset"]

_lock = threading.RLock()
_state: dict[str, object] = {}


def _build_broker() -> Broker:
    name = sse_settings.broker_name
    if name == "redis":
        from .redis import RedisBroker

        url = sse_settings.redis_url
        if not url:
            raise BrokerNotShared(
                "SSE_BROKER is 'redis' but no Redis is configured: set SSE_REDIS_URL."
            )
        return RedisBroker(
            url,
            prefix=sse_settings.SSE_REDIS_PREFIX,
            timeout=sse_settings.SSE_PUBLISH_TIMEOUT,
            maxlen=sse_settings.SSE_HISTORY_MAXLEN,
            ttl=sse_settings.SSE_HISTORY_TTL,
        )
    from .memory import MemoryBroker

    return MemoryBroker(maxlen=sse_settings.SSE_HISTORY_MAXLEN, ttl=sse_settings.SSE_HISTORY_TTL)


def _get(key: str, build):  # type: ignore[no-untyped-def]
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
    return _get("broker", _build_broker)


def get_hub():  # type: ignore[no-untyped-def]
    """Return this process's hub, starting the broker's subscriber on first use."""
    from ..hub import Hub

    return _get("hub", lambda: Hub(get_broker()))


def reset() -> None:
    """Close and forget the broker and hub (settings changed, or a test finished)."""
    with _lock:
        hub, broker = _state.get("hub"), _state.get("broker")
        _state.clear()
    if hub is not None:
        hub.close()
    elif broker is not None:
        broker.close()


def _on_setting_changed(setting: str, **kwargs: object) -> None:
    if setting.startswith("SSE_") or setting.startswith("REDIS_SSEQUEUE_"):
        reset()


setting_changed.connect(_on_setting_changed)
