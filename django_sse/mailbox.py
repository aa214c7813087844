"""The inbox of one stream: producers leave items, the stream waits and takes them all."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class Mailbox:
    """A bounded, thread-safe inbox that one consumer waits on with a timeout.

    Producers (the hub's fan-out, a pump running user code) call ``put()``,
    which never blocks: past ``limit`` items the mailbox is marked
    ``overflowed`` instead, and the stream ends so that the client reconnects
    and replays rather than silently losing events. The consumer takes every
    waiting item at once, which is what lets several events go out in one write.
    Works with threads and, once gevent has patched ``threading``, greenlets.
    """

    __slots__ = ("_items", "_wakeup", "limit", "overflowed", "end_reason")

    def __init__(self, limit: int) -> None:
        self._items: deque[Any] = deque()
        self._wakeup = threading.Event()
        self.limit = limit
        self.overflowed = False
        self.end_reason: str | None = None

    def put(self, item: Any) -> None:
        """Leave ``item``; mark the mailbox overflowed instead when it is full."""
        if len(self._items) >= self.limit:
            self.overflowed = True
        else:
            self._items.append(item)
        self._wakeup.set()

    def put_control(self, item: Any) -> None:
        """Leave a control item, which the bound never refuses."""
        self._items.append(item)
        self._wakeup.set()

    def end(self, reason: str) -> None:
        """Ask the stream to finish (client gone, shutdown, lifetime...); first reason wins."""
        if self.end_reason is None:
            self.end_reason = reason
        self._wakeup.set()

    def wait(self, timeout: float | None) -> bool:
        """Block until something arrives or ``timeout`` seconds pass; return whether it did."""
        return self._wakeup.wait(timeout)

    def take(self) -> list[Any]:
        """Remove and return every waiting item, oldest first."""
        self._wakeup.clear()
        items = self._items
        taken = []
        while items:
            taken.append(items.popleft())
        if self.end_reason is not None or self.overflowed:
            self._wakeup.set()  # keep the consumer awake until it acts on it
        return taken

    def __len__(self) -> int:
        return len(self._items)
