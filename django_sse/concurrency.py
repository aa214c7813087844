"""Running a function beside the stream: a greenlet under gevent, else a daemon thread.

The only module besides ``connection.py`` that knows about gevent, so the
encoder, the hub and the brokers stay usable by another front end later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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


class Task:
    """A function running concurrently; ``kill()`` interrupts it where gevent allows."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        if gevent_patched():
            import gevent

            self._greenlet = gevent.spawn(func, *args)
            self._thread = None
        else:
            self._greenlet = None
            self._thread = threading.Thread(target=func, args=args, daemon=True)
            self._thread.start()

    def kill(self) -> None:
        """Raise ``GreenletExit`` in a greenlet at its blocking point (threads cannot be)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def join(self, timeout: float | None = None) -> None:
        if self._greenlet is not None:
            self._greenlet.join(timeout)
        else:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        if self._greenlet is not None:
            return not self._greenlet.dead
        return self._thread.is_alive()
