"""The process-wide objects: the broker built from settings, its hub, the stream registry, the executor.

Built on first use and again after a fork (gunicorn workers start afresh);
``reset()`` closes them, and ``AppConfig.ready()`` connects it to
``setting_changed`` so that tests overriding ``SSE_*`` settings get new
ones. Which broker class the settings select, and its checks, are
``brokers.registry``'s; this module only keeps the instance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..brokers import registry
from ..brokers.base import Broker
from ..conf import sse_settings
from . import concurrency
from .concurrency import new_rlock, one_per_key
from .hub import Hub
from .presence import PresenceReporter
from .registry import StreamRegistry

T = TypeVar("T")

#: The streams this process serves (counted for SSE_MAX_STREAMS, ended together at shutdown).
streams = StreamRegistry()

#: Threads of the executor that ``concurrency.offload()`` and ``offload_soon()`` run on:
#: user hooks of ASGI streams, ``asend_event``'s publishes, ``achannel_presence``'s reads.
#: Calls beyond this many wait for a free thread (a queue, not a thread per call). Four
#: is what ``asend_event`` had alone; Django runs every sync view of an ASGI process on
#: one thread. Pitfall: a hook that blocks for long (a slow query in ``opening()``)
#: holds one of them, and a broker that hangs holds them up to SSE_PUBLISH_TIMEOUT.
EXECUTOR_THREADS = 4

_lock = new_rlock()
_state: dict[str, Any] = {}
_executor: tuple[int, ThreadPoolExecutor] | None = None  # (pid, executor)


def build_broker() -> Broker:
    """Return a new broker as the settings describe it (``brokers.registry`` picks its class).

    Raises ``ImproperlyConfigured`` with the system checks' own messages when
    the selected broker's settings are wrong.
    """
    return registry.build_broker(sse_settings)


def _get(key: str, build: Callable[[], T]) -> T:
    state = _state
    if state.get("pid") != os.getpid():  # forked (gunicorn): start afresh in the child
        with _lock:
            if state.get("pid") != os.getpid():
                state.clear()
                state["pid"] = os.getpid()
    # Re-entrant: building the hub gets the broker under the same lock.
    value: T = one_per_key(state, key, _lock, build)
    return value


def get_broker() -> Broker:
    """Return this process's broker (publishing never starts the subscriber)."""
    return _get("broker", build_broker)


def get_executor() -> ThreadPoolExecutor:
    """Return this process's executor for blocking calls made from the event loop, starting it on first use.

    The one way off the loop (``concurrency.offload``): a fixed pool, not
    the loop's default executor (which other libraries share) nor asgiref's
    thread-sensitive thread (which every sync view of the process queues on).
    It outlives ``reset()`` (a settings change does not concern it); a
    forked child starts its own, as the parent's threads are not in it.
    """
    global _executor
    current = _executor
    if current is None or current[0] != os.getpid():
        with _lock:
            current = _executor
            if current is None or current[0] != os.getpid():
                pool = ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="django-sse")
                current = _executor = (os.getpid(), pool)
    return current[1]


concurrency.use_executor(get_executor)


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
        _state.clear()
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
