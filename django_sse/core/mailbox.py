"""The handle of one stream: producers leave items in its mailbox, the stream waits and takes them.

Besides encoded events, a mailbox carries control items (``SYNC``,
``UNSYNCED``, ``NEXT_BATCH``, ``Recheck``, ``END``) that tell the stream what
happened elsewhere, and the ``EndReason`` once something asked it to finish.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from typing import Any

from ..brokers.base import Message
from .concurrency import AsyncWakeup, Wakeup, new_stream_wakeup


class EndReason(enum.Enum):
    """Why a stream ended; the value is the label logs and metrics use."""

    CLIENT_GONE = "client gone"
    MAX_LIFETIME = "max lifetime"
    PERMISSION_REVOKED = "permission revoked"
    SHUTDOWN = "server shutdown"
    SOURCE_FINISHED = "iterator finished"
    OVERFLOW = "queue overflow"
    CLOSED = "stream closed"

    @property
    def tells_client(self) -> bool:
        """Whether the stream still writes its closing chunk (a retry hint) to the client."""
        return self not in (EndReason.CLIENT_GONE, EndReason.CLOSED)

    @property
    def sheds_connection(self) -> bool:
        """Whether the connection is closed after the response, so the reconnection may go elsewhere."""
        return self in (EndReason.SHUTDOWN, EndReason.MAX_LIFETIME)


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: A channel the stream reads has (re)subscribed: catch up from history.
SYNC = _Marker("SYNC")
#: The subscription was lost: hold live events until the next ``SYNC`` (events
#: published meanwhile are only in history; a live one must not move the position past them).
UNSYNCED = _Marker("UNSYNCED")
#: What the view's own producer (``iterator()``) had to say is all said.
END = _Marker("END")
#: A catch-up wrote one batch of history: read the next. Put by the stream itself, so
#: the next read waits until the client has taken the batch (which bounds its memory).
NEXT_BATCH = _Marker("NEXT_BATCH")


class Recheck:
    """Tells a stream to check again whether its user may read ``channel``."""

    __slots__ = ("channel",)

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def __repr__(self) -> str:
        return f"Recheck({self.channel!r})"


class Mailbox:
    """A bounded inbox that one stream waits on, and the stream's state as others see it.

    Producers (the hub's fan-out, a task running user code) call ``put()``,
    which never blocks: past ``limit`` items, or past ``max_bytes`` bytes
    (what it holds plus what the stream holds aside, see ``hold()``), the
    mailbox overflows instead (``overflow()``), and the stream ends so that
    the client reconnects and replays rather than silently losing events.
    One item larger than ``max_bytes`` is taken when nothing else is held:
    the bound is on what piles up, never on a single event. The stream takes every
    waiting item at once, which lets several events go out in one write.
    The heartbeat wheel calls ``poke_idle()`` when the stream has been silent
    for an interval. Any greenlet or thread may call any method but
    ``wait()``, ``take()``, ``hold()``, ``heartbeat_sent()`` and ``mark_sent()``,
    which are the stream's. The byte count takes no lock: with producers in
    real threads (ASGI) it may be off by the items put during a ``take()``,
    until the next one. The public attributes are for reading: only the mailbox's
    own methods write them (the stream loop reads them on its hot path).
    """

    __slots__ = (
        "_items",
        "_bytes",
        "_aside",
        "_wakeup",
        "_on_overflow",
        "_last_sent",
        "end_reason",
        "overflowed",
        "heartbeat_due",
        "limit",
        "max_bytes",
        "owner",
    )

    def __init__(
        self,
        limit: int,
        owner: str | None = None,
        asynchronous: bool = False,
        max_bytes: int | None = None,
    ) -> None:
        # A list, never replaced: append() and the slice/del in take() are each
        # atomic under the GIL, so no lock is needed even with real threads.
        self._items: list[Any] = []
        #: The bytes of the events in ``_items`` (see ``item_size``), and those held aside.
        self._bytes = 0
        self._aside = 0
        # asynchronous: the stream is a coroutine (ASGI), which awaits wait_async().
        self._wakeup: Wakeup | AsyncWakeup = AsyncWakeup() if asynchronous else new_stream_wakeup()
        self._on_overflow: Callable[[], None] | None = None
        self._last_sent = time.monotonic()
        #: Why the stream was asked to finish (``OVERFLOW`` once it overflowed); None meanwhile.
        self.end_reason: EndReason | None = None
        #: The mailbox refused an item: the client misses events and must replay them.
        self.overflowed = False
        #: The heartbeat wheel found the stream silent for an interval (see ``heartbeat_sent``).
        self.heartbeat_due = False
        self.limit = limit
        #: The bytes the stream may hold for its client (None: no bound).
        self.max_bytes = max_bytes
        #: Who the stream serves (the user's primary key), for permission changes.
        self.owner = owner

    # Producers ---------------------------------------------------------------

    def put(self, item: Any, size: int | None = None) -> None:
        """Leave ``item``; overflow instead when the mailbox is full (in items or in bytes).

        ``size`` is ``item_size(item)`` when the caller knows it already (the
        hub, which puts one event into many mailboxes, measures it once).
        """
        if size is None:
            size = item.size if type(item) is Message else item_size(item)
        items = self._items
        held = self._bytes + self._aside
        if len(items) >= self.limit or (
            held and self.max_bytes is not None and held + size > self.max_bytes
        ):
            self.overflow()
        else:
            self._bytes += size
            items.append(item)
            self._wakeup.set()

    def put_control(self, item: Any) -> None:
        """Leave a control item, which the bound never refuses."""
        self._items.append(item)
        self._wakeup.set()

    def overflow(self) -> None:
        """Mark the stream as unable to keep up: it ends, and the client replays what it missed.

        The first time, calls the ``on_overflow`` callback (the stream may be
        blocked writing to a client that stopped reading).
        """
        first = not self.overflowed
        self.overflowed = True
        if self.end_reason is None:
            self.end_reason = EndReason.OVERFLOW
        self._wakeup.set()
        if first and self._on_overflow is not None:
            self._on_overflow()

    def on_overflow(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the mailbox first overflows."""
        self._on_overflow = callback

    def end(self, reason: EndReason) -> None:
        """Ask the stream to finish; the first reason given wins."""
        if self.end_reason is None:
            self.end_reason = reason
        self._wakeup.set()

    def poke_idle(self) -> None:
        """Wake the stream to send a heartbeat (called by the heartbeat wheel)."""
        self.heartbeat_due = True
        self._wakeup.set()

    # State -------------------------------------------------------------------

    @property
    def ending(self) -> bool:
        """Whether the stream was asked to finish (or overflowed)."""
        return self.end_reason is not None

    @property
    def bytes_held(self) -> int:
        """The bytes of the events waiting here and of those the stream holds aside."""
        return self._bytes + self._aside

    def silent_since(self, moment: float) -> bool:
        """Return whether the stream has written nothing since ``moment`` (``time.monotonic()``)."""
        return self._last_sent <= moment

    # The stream's own --------------------------------------------------------

    def wait(self) -> None:
        """Block until an item, an end, or a heartbeat poke arrives (a mailbox not made ``asynchronous``)."""
        wakeup = self._wakeup
        if isinstance(wakeup, AsyncWakeup):
            raise TypeError("This mailbox is asynchronous: await its wait_async(), not wait().")
        wakeup.wait()

    async def wait_async(self) -> None:
        """``wait()`` for a stream that runs on an event loop (a mailbox made ``asynchronous``)."""
        wakeup = self._wakeup
        if not isinstance(wakeup, AsyncWakeup):
            raise TypeError("This mailbox blocks: call its wait(), or make it asynchronous=True.")
        await wakeup.wait()

    def take(self) -> list[Any]:
        """Remove and return every waiting item, oldest first."""
        self._wakeup.clear()
        items = self._items
        count = len(items)
        taken = items[:count]
        del items[:count]
        self._bytes = 0
        if self.end_reason is not None:
            self._wakeup.set()  # keep the consumer awake until it acts on it
        return taken

    def hold(self, size: int) -> None:
        """Count ``size`` bytes the stream keeps aside now (live events held during a catch-up)."""
        self._aside = size

    def heartbeat_sent(self) -> None:
        """Record that the heartbeat the wheel asked for was dealt with."""
        self.heartbeat_due = False

    def mark_sent(self) -> None:
        """Record that the stream just wrote to its client (the heartbeat wheel reads it)."""
        self._last_sent = time.monotonic()

    def __len__(self) -> int:
        return len(self._items)


def item_size(item: Any) -> int:
    """Return the bytes an item of a mailbox counts: an event's (``Message.size``), a chunk's."""
    if isinstance(item, Message):
        return item.size
    return len(item) if isinstance(item, bytes) else 0
