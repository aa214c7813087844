"""The contract between a broker and the hub of its process, written once.

A broker (``Broker``) publishes events, keeps each channel's recent history,
and delivers live events to one listener, the process's hub, through the
callbacks of ``BrokerListener``. Every broker (memory, Redis, and the
topologies to come) implements exactly ``Broker``; the rest of the package
talks to that, never to a concrete broker. ``Message`` and ``History`` are
what travels between them.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

from django.core.checks import CheckMessage

from ..conf import Settings
from ..core.positions import ZERO, Position, format_position
from ..sse import encode_event


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
            event_id = self.id
            if event_id is None:
                self._frame = self.body
            else:
                self._frame = b"id: %s\n%s" % (event_id.encode(), self.body)
        return self._frame

    @property
    def size(self) -> int:
        """The bytes the event takes on the wire, without its ``id:`` line (what byte budgets count)."""
        body = self._body
        return len(self.body if body is None else body)

    def __repr__(self) -> str:
        return f"<Message {self.channel}/{self.id} {self.event!r}>"


class GapCause(enum.Enum):
    """Why a history read found a gap; the value is the label metrics use."""

    TRIMMED = "trimmed"  # older than what is retained (count or age)
    UNKNOWN_POSITION = "unknown position"  # never issued by this history, or from its future
    HISTORY_LOST = "history lost"  # the channel's history is gone (expired, Redis lost it)


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
    #: With ``gap``: why.
    cause: GapCause | None = None


class BrokerListener(Protocol):
    """What a broker calls on the hub of its process; from the broker's reader only.

    The calls come one at a time, in the order the broker learnt of each
    thing, and must not block on the broker (the memory broker calls from
    inside ``publish()`` and ``subscribe()``).
    """

    def on_connected(self) -> int:
        """The broker's subscription is (re)established: subscribe every channel again.

        Return how many channels were subscribed (for the broker's log line).
        """

    def on_subscribed(self, channel: str) -> None:
        """The broker confirmed one ``subscribe()`` of ``channel``."""

    def on_message(self, message: Message) -> None:
        """A live event of a subscribed channel."""

    def on_control(self, payload: str) -> None:
        """A control message that some process published with ``publish_control()``."""

    def on_caught_up(self, token: str) -> None:
        """Every live event published before ``catch_up_live(token)`` was called has been delivered."""

    def on_disconnected(self) -> None:
        """The subscription is lost: events published from now on arrive only in history."""

    def on_lost(self, channels: list[str]) -> None:
        """The subscriptions of ``channels`` alone are lost; the others' stay up.

        For a broker with several subscriber connections (one per cluster
        shard): one of them dropped, or the channels' slot moved to another
        shard. Events published to them from now on arrive only in history
        until ``on_subscribed`` confirms each again; the broker resubscribes
        them itself (the listener forgets their pending ``subscribe()``
        calls, so it must not count confirmations of them).
        """


class Broker(ABC):
    """Publishes events, keeps history, and feeds one ``BrokerListener`` with live events.

    Errors: a broker that cannot be reached raises ``BrokerUnavailable``
    (``PublishError`` from ``publish``); nothing else it raises means that.
    """

    #: Whether events published in one process reach streams in others.
    shared: bool = False
    #: Whether history reads wait on the network (then the hub reads off its reader).
    blocking_reads: bool = True
    #: Whether ``subscribe``/``unsubscribe`` may wait (a connection to open, a lock held
    #: across I/O); under ASGI a stream then opens and closes in a thread, off the loop.
    blocking_subscriptions: bool = False

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Broker:
        """Return a broker of this class as ``settings`` describe it, connecting to nothing yet.

        Called by ``brokers.registry.build_broker()`` once ``check()`` found no
        error, so it may trust the values ``check()`` validates. Override it
        in every broker; the pitfall is reading ``django.conf.settings``
        directly, which bypasses the defaults of ``django_sse.conf``.
        """

    @classmethod
    def check(cls, settings: Settings) -> list[CheckMessage]:
        """Return the system-check messages (``django_sse.E0xx``) about the settings this class reads.

        The default has none. ``django_sse.checks`` asks every registered
        broker class, selected or not, since a setting given to a broker that
        is not selected is itself a mistake only its owner can name; when the
        class is selected, ``build_broker()`` raises ``ImproperlyConfigured``
        on its errors, so the same words reach both. Read settings only:
        connecting belongs to ``ping()`` (``check --deploy``).
        """
        return []

    @abstractmethod
    def publish(self, channel: str, event: str, data: str, history: bool) -> str | None:
        """Record (when ``history``) and announce one event; return its id, or None.

        Raises ``PublishRefused`` when nothing was published (the broker could
        not be reached, or refused the event whole) and ``PublishOutcomeUnknown``
        when the event went out and its fate is unknown (no answer in time):
        a retry must know which.
        """

    def publish_in_sequence(self, channel: str, event: str, data: str) -> tuple[str, str]:
        """Record and announce one event with history; return its id and the id of the one before it.

        The id before is that of the channel's newest retained event when
        this one was recorded (``0-0`` when none), read in the same atomic
        step: GRIP mode publishes it as the event's ``prev-id``, from which
        the proxy finds any event it was not given. The default raises
        ``NotImplementedError``: a broker that cannot tell leaves GRIP mode
        refused at start-up (``django_sse.E058``). Raises as ``publish()``.
        """
        raise NotImplementedError

    @abstractmethod
    def publish_control(self, payload: str) -> None:
        """Announce a control message to the listener of every process (``on_control``)."""

    @abstractmethod
    def read_history(
        self, channel: str, after: Position | None, limit: int, max_bytes: int | None = None
    ) -> History:
        """Return up to ``limit`` retained messages after ``after`` (None: only the tip).

        ``max_bytes``: stop before the message that would take the read past
        that many bytes (of event names and data; ``more`` is then set), but
        return at least one: a read's memory is bounded, and an event larger
        than the bound is still read. Raises ``BrokerUnavailable`` when the
        broker cannot be reached.
        """

    @abstractmethod
    def read_latest(self, channel: str) -> Message | None:
        """Return the newest retained message of ``channel``, or None when none is retained.

        Raises ``BrokerUnavailable`` when the broker cannot be reached.
        """

    @abstractmethod
    def start(self, listener: BrokerListener) -> None:
        """Begin delivering to ``listener``; call ``on_connected`` once subscribed-ready."""

    @abstractmethod
    def subscribe(self, channels: list[str]) -> bool:
        """Ask for live events of ``channels``; return False when not connected.

        Each channel is confirmed later through ``listener.on_subscribed``
        (once per call, unless ``on_lost`` names it first); a command that
        could not be sent is resent by ``on_connected``. A broker that
        resubscribes by itself (the cluster's) always returns True.
        """

    @abstractmethod
    def unsubscribe(self, channels: list[str]) -> bool:
        """Stop live events of ``channels``; return False when not connected."""

    @abstractmethod
    def catch_up_live(self, channel: str, token: str) -> bool:
        """Call ``listener.on_caught_up(token)`` once the live events of ``channel`` published so far are delivered.

        Every event of ``channel`` whose publication finished before this call
        (in particular every event a history read that returned before it
        could see) reaches ``on_message`` before that ``on_caught_up``. Return
        False when not connected (the subscription is then lost:
        ``on_disconnected``, or ``on_lost`` of ``channel``, follows or came).
        A broker with one connection may ignore ``channel``; one with a
        connection per shard asks the channel's.
        """

    @abstractmethod
    def write_presence(self, process_key: str, report: str, ttl: float) -> None:
        """Keep ``report`` as the presence report of process ``process_key`` for ``ttl`` seconds.

        It replaces that process's previous report; once ``ttl`` passes with
        no new one, ``read_presence`` no longer returns it (a dead process's
        streams vanish on their own). Called once per ``SSE_PRESENCE_INTERVAL``
        by each process; raises ``BrokerUnavailable`` when the broker cannot be reached.
        """

    @abstractmethod
    def read_presence(self) -> list[str]:
        """Return the unexpired report of every process that shares this broker.

        A broker that is not ``shared`` returns its own process's only.
        Raises ``BrokerUnavailable`` when the broker cannot be reached.
        """

    def is_connected(self) -> bool:
        """Whether live events reach the listener now (the subscription is up); for reports."""
        return True

    def ping(self) -> None:  # noqa: B027 (optional hook)
        """Raise ``BrokerUnavailable`` unless the broker answers now (``check --deploy``).

        Waits at most the broker's timeouts. The default (a broker in the
        process) always answers.
        """

    def never_reached(self) -> bool:
        """Whether this process tried to reach the broker and never has (no subscription, ever).

        While the first attempt (begun by ``start()``) is under way, wait for
        its outcome, at most the broker's connect timeout. Once the broker was
        reached, False for good: a later outage is a lost subscription, which
        streams ride out (they catch up from history). A stream that opens
        while this is True is refused with a 503. The default (a broker in
        the process) is always reached.
        """
        return False

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections and stop delivering."""
