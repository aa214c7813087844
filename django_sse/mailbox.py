"""The inbox of one stream: producers leave items, the stream waits and takes them all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Mailbox:
    """A bounded, thread-safe inbox that one consumer waits on.

    Producers (the hub's fan-out, a pump running user code) call ``put()``,
    which never blocks: past ``limit`` items the mailbox is marked
    ``overflowed`` instead, and the stream ends so that the client reconnects
    and replays rather than silently losing events. The consumer takes every
    waiting item at once, which is what lets several events go out in one
    write. The heartbeat wheel pokes it when the stream has been silent too
    long. Works with threads and, once gevent has patched ``threading``,
    greenlets.
    """

    __slots__ = (
        "_items",
        "_wakeup",
        "limit",
        "overflowed",
        "end_reason",
        "owner",
        "last_sent",
        "idle",
        "on_overflow",
    )

    def __init__(self, limit: int, owner: str | None = None) -> None:
        # A list, never replaced: append() and the slice/del in take() are each
        # atomic under the GIL, so no lock is needed even with real threads.
        self._items: list[Any] = []
        self._wakeup = threading.Event()
        self.limit = limit
        self.overflowed = False
        self.end_reason: str | None = None
        #: Who the stream serves (the user's primary key), for permission changes.
        self.owner = owner
        #: When the stream last wrote (time.monotonic()), for the heartbeat wheel.
        self.last_sent = time.monotonic()
        #: Set by the heartbeat wheel: the stream has been silent for a heartbeat interval.
        self.idle = False
        #: Called once, when the mailbox first overflows (the stream hangs up on its client).
        self.on_overflow: Callable[[], None] | None = None

    def put(self, item: Any) -> None:
        """Leave ``item``; mark the mailbox overflowed instead when it is full."""
        if len(self._items) >= self.limit:
            first = not self.overflowed
            self.overflowed = True
            if first and self.on_overflow is not None:
                # The stream may be blocked writing to a client that stopped reading.
                self.on_overflow()
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

    def poke_idle(self) -> None:
        """Wake the stream to send a heartbeat (called by the heartbeat wheel)."""
        self.idle = True
        self._wakeup.set()

    def wait(self) -> None:
        """Block until an item, an end, or a heartbeat poke arrives."""
        self._wakeup.wait()

    def take(self) -> list[Any]:
        """Remove and return every waiting item, oldest first."""
        self._wakeup.clear()
        items = self._items
        count = len(items)
        taken = items[:count]
        del items[:count]
        if self.end_reason is not None or self.overflowed:
            self._wakeup.set()  # keep the consumer awake until it acts on it
        return taken

    def __len__(self) -> int:
        return len(self._items)
