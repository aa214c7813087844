"""The one seam for concurrency: everything in django-sse that waits, wakes, spawns or sleeps.

Nothing else in the package imports gevent or uses ``threading`` to wait;
they call this module. Today it has one implementation with two flavours,
chosen by the process, not by the caller:

* **gevent** (the process is monkey-patched: ``gunicorn -k gevent``, a
  ``gevent.pywsgi`` program). ``Task`` is a greenlet; ``Wakeup``, ``Lock``
  and ``sleep`` are gevent's cooperative versions (``threading`` is patched),
  so waiting switches to other greenlets and never blocks the worker.
  ``watch_readable`` runs its callback in the hub's loop, without a greenlet
  of its own. ``Task.kill()`` raises ``GreenletExit`` where the task waits.
* **threads** (``runserver``, a sync worker, the tests' own process).
  ``Task`` is a daemon thread; waiting blocks that thread only.
  ``watch_readable`` watches nothing (returns None): a vanished client is
  found at the next heartbeat instead. ``Task.kill()`` cannot interrupt a
  thread: the function must notice that its work ended (see the stream loop).

Every object here may be used from any greenlet or thread of the process:
``Wakeup.set()`` from a producer, ``Wakeup.wait()`` from the one consumer.
Objects created before gevent patched the process would be the unpatched
kind: create them at run time (in ``__init__``, on first use), not at import.
The ASGI front adds an asyncio implementation of this same interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

_patched = False


def gevent_patched() -> bool:
    """Return whether gevent has monkey-patched this process (threads are greenlets)."""
    global _patched
    if not _patched:  # patching is never undone: once seen, remember it
        try:
            from gevent import monkey
        except ImportError:
            return False
        _patched = monkey.is_module_patched("threading") and monkey.is_module_patched("socket")
    return _patched


class Wakeup(Protocol):
    """A flag one consumer waits on and any producer sets (``threading.Event`` semantics)."""

    def set(self) -> None:
        """Wake the waiter (now or at its next ``wait()``); never blocks."""

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set, or ``timeout`` seconds; return whether it was set."""


def new_wakeup() -> Wakeup:
    """Return a new ``Wakeup``: the flavour's own event, with no wrapper on the hot path."""
    return threading.Event()


def new_lock() -> threading.Lock:
    """Return a mutual-exclusion lock; hold it only around work that does not wait."""
    return threading.Lock()


def new_rlock() -> threading.RLock:
    """Return a lock its holder may take again (for callbacks that re-enter)."""
    return threading.RLock()


def sleep(seconds: float) -> None:
    """Pause the calling greenlet or thread."""
    time.sleep(seconds)


class Task:
    """A function running concurrently: a greenlet under gevent, else a daemon thread."""

    __slots__ = ("_greenlet", "_thread")

    def __init__(self, func: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        self._greenlet: Any = None
        self._thread: threading.Thread | None = None
        if gevent_patched():
            import gevent

            self._greenlet = gevent.spawn(func, *args)
        else:
            self._thread = threading.Thread(target=func, args=args, name=name, daemon=True)
            self._thread.start()

    def kill(self) -> None:
        """Raise ``GreenletExit`` in a greenlet at its blocking point (threads cannot be)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function has returned, at most ``timeout`` seconds."""
        if self._greenlet is not None:
            self._greenlet.join(timeout)
        elif self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        if self._greenlet is not None:
            return not self._greenlet.dead
        return self._thread is not None and self._thread.is_alive()


def call_later(delay: float, func: Callable[..., Any], *args: Any) -> Task:
    """Call ``func(*args)`` in a new task after ``delay`` seconds."""

    def run() -> None:
        sleep(delay)
        func(*args)

    return Task(run, name="django-sse-later")


class Watch(Protocol):
    """A watcher of one file descriptor; ``stop()`` then ``close()`` release it."""

    def stop(self) -> None: ...

    def close(self) -> None: ...


def watch_readable(fileno: int, callback: Callable[..., None], *args: Any) -> Watch | None:
    """Call ``callback(*args)`` (in gevent's loop) when ``fileno`` turns readable; None without gevent.

    The callback runs once per readiness and must not block; the caller
    stops and closes the returned watch, usually from the callback itself.
    The loop's own watcher is returned, with no wrapper: one per stream.
    """
    if not gevent_patched():
        return None
    import gevent

    watcher = gevent.get_hub().loop.io(fileno, 1)
    watcher.start(callback, *args)
    return watcher
