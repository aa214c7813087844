"""What the hub needs from a broker, and the message that travels between them.

A broker publishes events, keeps each channel's recent history, and delivers
live events to the one ``Hub`` of the process through callbacks. Nothing here
blocks in a gevent-specific way, so another front end can reuse it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..positions import ZERO, Position, format_position
from ..sse import encode_event

if TYPE_CHECKING:
    from ..hub import Hub


class Message:
    """One published event; encoded to SSE once, however many streams receive it."""

    __slots__ = ("channel", "event", "data", "position", "_id", "_body", "_frame")

    def __init__(
        self,
        channel: str,
        event: str,
        data: str,
        position: Position | None,
        event_id: str | None = None,
    ) -> None:
        self.channel = channel
        self.event = event
        self.data = data
        self.position = position
        self._id = event_id  # the position as text, when the broker already has it
        self._body: bytes | None = None
        self._frame: bytes | None = None

    @property
    def id(self) -> str | None:
        if self._id is None and self.position is not None:
            self._id = format_position(self.position)
        return self._id

    @property
    def body(self) -> bytes:
        """The event without an ``id:`` line."""
        if self._body is None:
            self._body = encode_event(self.event, self.data).encode("utf-8")
        return self._body

    @property
    def frame(self) -> bytes:
        """The event with its own id, as a one-channel stream sends it."""
        if self._frame is None:
            if self.position is None:
                self._frame = self.body
            else:
                self._frame = b"id: %s\n%s" % (self.id.encode(), self.body)
        return self._frame

    def __repr__(self) -> str:
        return f"<Message {self.channel}/{self.id} {self.event!r}>"


@dataclass
class History:
    """What a broker retains of one channel after a given position."""

    messages: list[Message] = field(default_factory=list)
    #: Events after the position are gone (trimmed, expired, Redis restarted) or the
    #: position was never issued by this history: the client must be told.
    gap: bool = False
    #: The newest position of the channel (``0-0`` when it has no events).
    tip: Position = ZERO
    #: More messages follow the ones returned (the read was limited).
    more: bool = False


class Broker(ABC):
    """Publishes events, keeps history, and feeds one hub with live events."""

    #: Whether events published in one process reach streams in others.
    shared: bool = False
    #: Whether history reads wait on the network (then the hub reads off its reader).
    blocking_reads: bool = True

    @abstractmethod
    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        """Record (when ``history``) and announce one event; return its id, or None."""

    @abstractmethod
    def read_history(self, channel: str, after: Position | None, limit: int) -> History:
        """Return up to ``limit`` retained messages after ``after`` (None: only the tip)."""

    @abstractmethod
    def start(self, hub: Hub) -> None:
        """Begin delivering to ``hub``: ``on_message``, ``on_subscribed``, ``on_disconnected``."""

    @abstractmethod
    def subscribe(self, channels: list[str]) -> bool:
        """Ask for live events of ``channels``; return False when not connected.

        Confirmed later through ``hub.on_subscribed``.
        """

    @abstractmethod
    def unsubscribe(self, channels: list[str]) -> bool:
        """Stop live events of ``channels``; return False when not connected."""

    @abstractmethod
    def publish_control(self, payload: str) -> None:
        """Announce a control message to the hub of every process (``hub.on_control``)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections and stop delivering."""

    def connection_count(self) -> int:
        """Return how many server connections this broker holds (for tests and benchmarks)."""
        return 0
