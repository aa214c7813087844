"""The in-process broker: the default when no Redis is configured.

Events reach only the streams of the process that publishes them, so it
suits development, the example project and single-process deployments.
History has the same semantics as the Redis broker: ids ``ms-seq`` that grow
per channel, bounded by a count and an age, and a gap reported when a
position falls behind what was trimmed.
"""

from __future__ import annotations

import time
from collections import deque

from ..conf import Settings
from ..core.concurrency import new_lock
from ..core.positions import ZERO, Position, format_position
from .base import Broker, BrokerListener, GapCause, History, Message


class _Log:
    __slots__ = ("entries", "last", "max_deleted", "touched")

    def __init__(self) -> None:
        self.entries: deque[Message] = deque()
        self.last: Position = ZERO
        self.max_deleted: Position = ZERO
        self.touched = 0.0


class MemoryBroker(Broker):
    """Publishes to this process's hub and keeps a bounded history in memory."""

    shared = False
    blocking_reads = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryBroker:
        """Return a broker keeping ``SSE_HISTORY_MAXLEN`` events per channel for ``SSE_HISTORY_TTL`` seconds."""
        return cls(maxlen=settings.SSE_HISTORY_MAXLEN, ttl=settings.SSE_HISTORY_TTL)

    def __init__(self, maxlen: int, ttl: float) -> None:
        self.maxlen = maxlen
        self.ttl = ttl
        self._logs: dict[str, _Log] = {}
        self._subscribed: set[str] = set()
        self._listener: BrokerListener | None = None
        self._lock = new_lock()
        self._presence: dict[str, tuple[str, float]] = {}  # key -> (report, expiry, monotonic)

    def start(self, listener: BrokerListener) -> None:
        self._listener = listener
        listener.on_connected()

    def subscribe(self, channels: list[str]) -> bool:
        listener = self._listener
        if listener is None:
            return False
        self._subscribed.update(channels)
        for channel in channels:
            listener.on_subscribed(channel)
        return True

    def unsubscribe(self, channels: list[str]) -> bool:
        self._subscribed.difference_update(channels)
        return True

    def catch_up_live(self, channel: str, token: str) -> bool:
        # publish() announces under the lock that history reads take: nothing is on its way.
        listener = self._listener
        if listener is None:
            return False
        listener.on_caught_up(token)
        return True

    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        return self._publish(channel, event, data, history)[0]

    def publish_in_sequence(self, channel: str, event: str, data: str) -> tuple[str, str]:
        event_id, previous = self._publish(channel, event, data, True)
        assert event_id is not None
        return event_id, format_position(previous)

    def _publish(
        self, channel: str, event: str, data: str, history: bool
    ) -> tuple[str | None, Position]:
        with self._lock:
            position = None
            previous = ZERO
            if history:
                log = self._unexpired_log(channel)  # expired: the event before it is gone
                if log is None:
                    log = self._logs[channel] = _Log()
                previous = log.last
                position = self._next_position(log.last)
                log.last = position
                message = Message(channel, event, data, position)
                log.entries.append(message)
                log.touched = time.time()
                self._trim(log)
            else:
                message = Message(channel, event, data, None)
            listener = self._listener if channel in self._subscribed else None
            # Announce under the lock, so every stream sees events in id order.
            if listener is not None:
                listener.on_message(message)
        return message.id, previous

    def publish_control(self, payload: str) -> None:
        if self._listener is not None:
            self._listener.on_control(payload)

    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:
        with self._lock:
            log = self._unexpired_log(channel)
            if log is None:
                if after is None or after == ZERO:
                    return History()
                return History(gap=True, cause=GapCause.HISTORY_LOST)
            self._trim(log)
            if after is None:
                return History(tip=log.last)
            if after > log.last:
                return History(gap=True, tip=log.last, cause=GapCause.UNKNOWN_POSITION)
            if after < log.max_deleted:
                return History(gap=True, tip=log.last, cause=GapCause.TRIMMED)
            known = after == ZERO or after == log.max_deleted
            newer = []
            for message in log.entries:
                position = _logged(message)
                if position > after:
                    newer.append(message)
                elif position == after:
                    known = True
            if not known:  # a position this history never issued
                return History(gap=True, tip=log.last, cause=GapCause.UNKNOWN_POSITION)
            read = newer[:limit]
            if max_bytes is not None:
                read = _within(read, max_bytes)
            return History(messages=read, tip=log.last, more=len(newer) > len(read))

    def read_latest(self, channel: str) -> Message | None:
        with self._lock:
            log = self._unexpired_log(channel)
            if log is None:
                return None
            self._trim(log)
            return log.entries[-1] if log.entries else None

    def _unexpired_log(self, channel: str) -> _Log | None:
        """Return ``channel``'s log; forget it, and return None, once it has expired (as the Redis key would).

        Call it holding the lock.
        """
        log = self._logs.get(channel)
        if log is not None and self.ttl and time.time() - log.touched > self.ttl:
            del self._logs[channel]
            return None
        return log

    def write_presence(self, process_key: str, report: str, ttl: float) -> None:
        with self._lock:
            self._presence[process_key] = (report, time.monotonic() + ttl)

    def read_presence(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for key, (_, expiry) in list(self._presence.items()):
                if expiry <= now:
                    del self._presence[key]
            return [report for report, _ in self._presence.values()]

    def is_connected(self) -> bool:
        return self._listener is not None

    def _trim(self, log: _Log) -> None:
        cutoff = _position_at(time.time() - self.ttl) if self.ttl else ZERO
        entries = log.entries
        while entries and (len(entries) > self.maxlen or _logged(entries[0]) < cutoff):
            log.max_deleted = _logged(entries.popleft())

    @staticmethod
    def _next_position(last: Position) -> Position:
        now = int(time.time() * 1000)
        return (now, 0) if now > last[0] else (last[0], last[1] + 1)


def _logged(message: Message) -> Position:
    """Return the position of a message in a log (every logged message has one)."""
    assert message.position is not None
    return message.position


def _position_at(seconds: float) -> Position:
    return (int(seconds * 1000), 0)


def _within(messages: list[Message], max_bytes: int) -> list[Message]:
    """Return the first of ``messages`` that fit in ``max_bytes`` (at least one)."""
    size = 0
    for count, message in enumerate(messages):
        size += message.size
        if count and size > max_bytes:
            return messages[:count]
    return messages
