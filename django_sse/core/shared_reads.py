"""History reads shared by the streams of one channel, so a reconnect storm costs per channel.

After a deploy, thousands of streams come back with nearly the same
``Last-Event-ID``. Each would read the same history; here the hub keeps, per
channel, the last read and the one in flight, and a stream whose position
is the start of that read, or one of the events it returned, takes its
slice of it instead of reading again.

When a shared read is complete enough for a stream: the stream is attached
to the channel before it reads, so it gets live every event the hub
receives from then on. It needs from history every event after its
position that the hub had fanned out before it attached: all of them at or
before the hub's tip at that moment, its ``AttachMark``. A stream that
attached before the channel was ready (after a restart, nearly all of them)
has no mark; it was listening when the subscription was confirmed, so it
needs what history held then, all of it at or before the channel's tip
when it became ready (``Readiness``). A read whose own tip is at or after
that bound holds everything the stream needs, whenever it was made, however
many events arrived since. Neither bound is trusted across a lost
subscription (another generation), nor a read after ``MAX_AGE`` (history
can expire without an event). Anything the stream could not take exactly
is read for it alone, as before: sharing never changes what a stream
receives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ..brokers.base import Broker, History
from .concurrency import new_wakeup
from .positions import Position

#: Seconds a read is shared at the most (history can expire without a new event).
MAX_AGE = 1.0
#: Recent reads kept per channel (streams come back from a few different positions).
KEEP = 4

#: The hub's tip of a ready channel when a stream attached, and the subscription's generation.
AttachMark = tuple[Position, int]


class Readiness(NamedTuple):
    """A ready channel: its tip when it became ready in this generation (None: no history then)."""

    tip: Position | None


class _Read:
    """One history read of a channel: after ``start``, as the broker answered."""

    __slots__ = ("start", "history", "generation", "made_at", "_index")

    def __init__(self, start: Position, history: History, generation: int) -> None:
        self.start = start
        self.history = history
        self.generation = generation
        self.made_at = time.monotonic()
        self._index: dict[Position, int] | None = None

    def fresh(self, generation: int) -> bool:
        """Whether it may be shared at all: same subscription, younger than ``MAX_AGE``."""
        return generation == self.generation and time.monotonic() - self.made_at < MAX_AGE

    def usable(
        self, readiness: Readiness | None, generation: int, mark: AttachMark | None = None
    ) -> bool:
        """Whether it holds everything the hub fanned out before the stream attached.

        That is everything up to the stream's ``mark`` or, for a stream that
        attached before the channel was ready, up to the channel's tip then.
        """
        if not self.fresh(generation):
            return False
        needed: Position | None
        if mark is not None and mark[1] == generation:
            needed = mark[0]
        elif readiness is not None:
            needed = readiness.tip
        else:
            return False  # the channel is not ready: nothing is known of what it needs
        tip = self.history.tip
        return needed is None or (tip is not None and needed <= tip)

    def after(self, position: Position, limit: int) -> History | None:
        """Return what a read after ``position`` would, or None when this read cannot tell."""
        history = self.history
        if position == self.start:
            if len(history.messages) <= limit:
                return history
            return History(
                history.messages[:limit], history.gap, history.tip, more=True, cause=history.cause
            )
        if history.gap:
            return None
        if self._index is None:
            self._index = {m.position: i for i, m in enumerate(history.messages) if m.position}
        index = self._index.get(position)
        if index is None:
            return None  # not an event of this read: the broker decides (gap, or older)
        rest = history.messages[index + 1 :]
        if not rest and history.more:
            return None  # the next page is not in this read
        more = history.more or len(rest) > limit
        return History(rest[:limit], False, history.tip, more=more)


class _Flight:
    """A read under way; other streams of the channel may wait for it."""

    __slots__ = ("start", "generation", "result", "_done")

    def __init__(self, start: Position, generation: int) -> None:
        self.start = start
        self.generation = generation
        self.result: _Read | None = None
        self._done = new_wakeup()

    def finish(self, result: _Read | None) -> None:
        self.result = result
        self._done.set()

    def wait(self) -> _Read | None:
        self._done.wait()
        return self.result


class SharedReads:
    """The history reads of one hub: the last few and the one in flight, per channel."""

    def __init__(self, broker: Broker, readiness_of: Callable[[str], Readiness | None]) -> None:
        self._broker = broker
        #: A channel's ``Readiness``, or None while it is not ready.
        self._readiness_of = readiness_of
        self._recent: dict[str, list[_Read]] = {}  # newest first, at most KEEP
        self._flights: dict[str, _Flight] = {}
        #: Reads sent to the broker, and reads served from a shared one (for tests, metrics).
        self.broker_reads = 0
        self.shared = 0
        #: The bytes (``Message.size``) of the largest read the broker answered (for tests).
        self.largest_read = 0

    def read(
        self,
        name: str,
        after: Position,
        limit: int,
        generation: int,
        mark: AttachMark | None = None,
        max_bytes: int | None = None,
    ) -> History:
        """Return up to ``limit`` messages of ``name`` after ``after``, shared where exact.

        ``mark`` is the stream's ``AttachMark`` of the channel, if it has one.
        ``max_bytes`` bounds a read sent to the broker (see ``Broker.read_history``);
        a shared read was bounded by its own stream's, and the reader trims
        what it takes. Raises ``BrokerUnavailable`` when the broker must be
        asked and cannot be reached.
        """
        recent = self._recent.get(name)
        if recent:
            recent[:] = [kept for kept in recent if kept.fresh(generation)]
            readiness = self._readiness_of(name)
            for kept in recent:
                if kept.usable(readiness, generation, mark):
                    history = kept.after(after, limit)
                    if history is not None:
                        self.shared += 1
                        return history
            if not recent:
                del self._recent[name]  # keep no history that nobody can use
        flight = self._flights.get(name)
        if flight is not None and flight.generation == generation and flight.start <= after:
            result = flight.wait()
            if result is not None and result.usable(self._readiness_of(name), generation, mark):
                history = result.after(after, limit)
                if history is not None:
                    self.shared += 1
                    return history
        return self._read(name, after, limit, generation, max_bytes)

    def forget(self, name: str) -> None:
        """Drop what is kept of ``name`` (nobody reads it any more)."""
        self._recent.pop(name, None)

    def _read(
        self, name: str, after: Position, limit: int, generation: int, max_bytes: int | None
    ) -> History:
        flight = _Flight(after, generation)
        self._flights[name] = flight
        result = None
        try:
            self.broker_reads += 1
            history = self._broker.read_history(name, after, limit, max_bytes)
            result = _Read(after, history, generation)
            size = sum(message.size for message in history.messages)
            self.largest_read = max(self.largest_read, size)
        finally:
            if self._flights.get(name) is flight:
                del self._flights[name]
            flight.finish(result)
        recent = self._recent.setdefault(name, [])
        recent.insert(0, result)
        del recent[KEEP:]
        return history
