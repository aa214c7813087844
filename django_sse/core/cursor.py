"""Where one stream stands in each of its channels' history, and what it owes its client.

A ``ChannelCursor`` turns live messages into the bytes a stream writes, drops
those the client already has, and catches up from history: after a
reconnection (``Last-Event-ID``) and whenever the hub resubscribes after an
outage. Live messages that arrive while it is not in sync are held and
delivered, in order and without duplicates, once the catch-up is done.
Given a byte budget, a catch-up goes in batches: each ``catch_up()`` returns
at most that many bytes of history (at least one event), and the stream
writes them before it asks for the next, so a client that does not read
holds back the reads instead of piling history up in memory.
It performs no I/O of its own beyond the reads from its ``HistorySource``
(the hub) in ``catch_up()``.
"""

from __future__ import annotations

from typing import Protocol

from .. import metrics
from ..brokers.base import GapCause, History, Message
from ..conf import sse_settings
from ..exceptions import BrokerUnavailable
from ..sse import encode_data, encode_event
from .positions import Position, decode_positions, encode_positions, well_formed
from .shared_reads import AttachMark

_HISTORY_BATCH = 500


class HistorySource(Protocol):
    """Where a cursor reads history: the hub, which reads through the broker."""

    def read_history(
        self,
        name: str,
        after: Position,
        limit: int,
        mark: AttachMark | None = None,
        max_bytes: int | None = None,
    ) -> History:
        """Return up to ``limit`` messages after ``after``; raise ``BrokerUnavailable``.

        ``mark``: what the source had delivered of the channel when the stream
        attached (see ``attached()``), which lets it share reads. ``max_bytes``:
        at most about that many bytes of messages, and at least one.
        """

    def current_tip(self, name: str) -> Position:
        """Return the channel's newest position; raise ``BrokerUnavailable``."""

    def start_position(self, name: str, mark: AttachMark | None = None) -> Position | None:
        """Return the position after which every event reaches the stream live (None: unknown)."""

    def read_latest(self, name: str) -> Message | None:
        """Return the channel's newest retained message, or None; raise ``BrokerUnavailable``."""


class ChannelCursor:
    """The replay state of one stream over ``channels``."""

    __slots__ = (
        "channels",
        "history",
        "single",
        "resuming",
        "positions",
        "sent_id",
        "synced",
        "held",
        "held_bytes",
        "announce_start",
        "pending",
        "fresh",
        "resets",
        "failures",
        "started_live",
        "marks",
        "latest",
        "reset_causes",
        "id_well_formed",
    )

    def __init__(
        self,
        channels: list[str],
        history: list[str],
        last_event_id: str | None,
        resuming: bool,
        latest: frozenset[str] = frozenset(),
    ) -> None:
        self.channels = channels
        #: Latest-value channels: a new client starts with the channel's newest event.
        self.latest = latest
        #: The channels whose events carry ids and can be replayed.
        self.history = history
        self.single = len(history) == 1 and len(channels) == 1
        #: The client brought a position (even an unusable one: then it gets stream-reset).
        self.resuming = resuming and bool(history)
        self.positions: dict[str, Position] = (
            decode_positions(last_event_id, history) if self.resuming else {}
        )
        #: The id the client holds now.
        self.sent_id = last_event_id
        self.synced = not history
        self.held: list[Message] = []
        #: The bytes of ``held`` (``Message.size``), which count against the stream's budget.
        self.held_bytes = 0
        #: A new client's start came from the source: its id goes out before the held events.
        self.announce_start = False
        #: The channels the catch-up under way has still to read (None: none under way).
        self.pending: list[str] | None = None
        #: A new client's channels awaiting their first live event (see ``deliver``).
        self.fresh: set[str] = set()
        #: Channels found without their position, to announce with the next stream-reset.
        self.resets: list[str] = []
        #: Why, for each of ``resets`` (metrics labels).
        self.reset_causes: list[str] = []
        #: Whether the client's Last-Event-ID has the form of this stream's ids.
        self.id_well_formed = not self.resuming or well_formed(last_event_id, len(history))
        #: Catch-ups that failed in a row (for the retry delay).
        self.failures = 0
        #: A new client's channels that start with a held live event: no history to read
        #: (a set once there is one; most streams never need it).
        self.started_live: set[str] | None = None
        #: The source's marks of the channels when the stream attached (None: none).
        self.marks: dict[str, AttachMark] | None = None

    def receive(self, message: Message, limit: int, max_bytes: int | None = None) -> bytes | None:
        """Return the bytes for a live message; hold it while not in sync (None on overflow).

        Holding more than ``limit`` messages, or more than ``max_bytes`` bytes
        of them (one message alone is always held), is an overflow.
        """
        if self.synced:
            return self.deliver(message)
        self.held.append(message)
        self.held_bytes += message.size
        if len(self.held) > limit:
            return None
        if max_bytes is not None and self.held_bytes > max_bytes and len(self.held) > 1:
            return None
        return b""

    def deliver(self, message: Message) -> bytes:
        """Return ``message`` as the client should get it, or b"" if it already has it."""
        # The hot path of a fan-out (once per event and stream): each attribute is read once.
        position = message.position
        channel = message.channel
        positions = self.positions
        last = positions.get(channel)
        if position is None or last is None:
            return message.frame if len(self.channels) == 1 else message.body
        fresh = self.fresh
        if position <= last and channel not in fresh:
            return b""  # already sent by the replay, or older than this stream's start
        # A new client starts at the tip the hub knew; an event published meanwhile can
        # be older than that tip and still arrive live: it was never sent, so send it.
        if fresh:
            fresh.discard(channel)
        positions[channel] = position
        if self.single:
            self.sent_id = message.id
            return message.frame
        self.sent_id = encode_positions(self.positions)
        return b"id: %s\n%s" % (self.sent_id.encode(), message.body)

    def catch_up(self, source: HistorySource, max_bytes: int | None = None) -> tuple[bytes, bool]:
        """Replay what the client missed, then what was held; return the bytes and success.

        With ``max_bytes``, return one batch of history: at most that many
        bytes (``Message.size``), or one event if the first is larger. The
        catch-up is done when ``synced`` is True; until then the stream writes
        the batch and calls again, which goes on from there. On failure (the
        broker unreachable) what was replayed so far is still returned;
        positions have moved past it, so a retry goes on from there, and a
        reset found before the failure is announced by the retry.
        """
        self.synced = False
        if self.pending is None:
            self.pending = list(self.history)
        out: list[bytes] = []
        size = 0
        try:
            while self.pending:
                room = None
                if max_bytes is not None:
                    room = max_bytes - size
                    if room <= 0 and size:
                        break  # this batch is full: the stream writes it first
                    room = max(room, 1)
                chunks, done, used = self._catch_up_channel(source, self.pending[0], room)
                out.extend(chunks)
                size += used
                if done:
                    del self.pending[0]
                elif room is not None:
                    break
        except BrokerUnavailable:
            self.failures += 1
            self.pending = None  # the retry reads every channel again, from its position
            return b"".join(out), False
        self.failures = 0
        if self.resets:
            out.insert(0, self._reset_event(self.resets))
            metrics.record_stream_reset(self.reset_causes)
            self.resets, self.reset_causes = [], []
        if self.pending:
            return b"".join(out), True  # more to read: synced stays False
        self.pending = None
        self.started_live = None
        self.synced = True
        self.resuming = True
        held, self.held, self.held_bytes = self.held, [], 0
        if held and self.announce_start:
            out.append(self.id_update())  # a new client's start, before the events that follow it
        self.announce_start = False
        out.extend(self._deliver_all(held))
        out.append(self.id_update())
        return b"".join(out), True

    def restart(self) -> None:
        """Read every channel again at the next ``catch_up()`` (the source resubscribed)."""
        self.pending = None

    def attached(self, marks: dict[str, AttachMark]) -> None:
        """Keep the marks the source gave when the stream attached (for shared reads)."""
        self.marks = marks or None

    def lose_sync(self) -> None:
        """The hub lost its subscription: hold live messages until the next catch-up.

        Events published meanwhile are only in history; a live message that
        arrived first would otherwise move the position past them.
        """
        if self.history:
            self.synced = False

    def flush_held(self) -> bytes:
        """Deliver what was held (a stream without history has nothing to catch up)."""
        self.synced = True
        held, self.held, self.held_bytes = self.held, [], 0
        return b"".join(self._deliver_all(held))

    def id_update(self) -> bytes:
        """Return an ``id:`` line when the client's position is behind this stream's."""
        if not self.positions or not self.synced:
            return b""
        current = encode_positions(self.positions)
        if current == self.sent_id:
            return b""
        self.sent_id = current
        return b"id: %s\n\n" % current.encode()

    def _catch_up_channel(
        self, source: HistorySource, channel: str, room: int | None
    ) -> tuple[list[bytes], bool, int]:
        """Read ``channel`` once; return the bytes, whether it is done, and their size.

        ``room``: the bytes left in this batch (None: no bound).
        """
        after = self.positions.get(channel)
        if self.started_live is not None and channel in self.started_live:
            # A retry after a failed catch-up: this channel starts with its held event.
            return [], True, 0
        if after is None and not self.resuming and channel in self.latest:
            # A latest-value channel: the newest retained event, then what follows it.
            newest = source.read_latest(channel)
            if newest is None or newest.position is None:
                self._start_now(source, channel)
                return [], True, 0
            self.positions[channel] = _before(newest.position)
            return [self.deliver(newest)], True, newest.size
        if after is None and not self.resuming:
            # A new client starts now: with the first live event it got, or at the tip.
            first = next((m for m in self.held if m.channel == channel and m.position), None)
            if first is not None and first.position is not None:
                start = source.start_position(channel, self._mark(channel))
                if start is not None and start < first.position:
                    # Where the source's live events begin for it, as for any new client;
                    # the held event is newer and follows the id of that start.
                    self.positions[channel] = start
                    self.announce_start = True
                    return [], True, 0
                # The source's start covers it (the hub learned its tip after the event was
                # published): start just before it, so that it is delivered; never read as
                # a history position.
                self.positions[channel] = _before(first.position)
                if self.started_live is None:
                    self.started_live = set()
                self.started_live.add(channel)
                return [], True, 0
            self._start_now(source, channel)
            return [], True, 0
        if after is None:
            # A Last-Event-ID that says nothing usable of this channel.
            self.positions[channel] = source.current_tip(channel)
            unusable = GapCause.UNKNOWN_POSITION.value if self.id_well_formed else "malformed id"
            self._reset(channel, unusable)
            return [], True, 0
        mark = self._mark(channel)
        history = source.read_history(
            channel, self.positions[channel], _HISTORY_BATCH, mark, max_bytes=room
        )
        if history.gap:
            self.positions[channel] = history.tip
            cause = history.cause or GapCause.UNKNOWN_POSITION
            self._reset(channel, cause.value)
            return [], True, 0
        messages = history.messages
        size = 0
        for count, message in enumerate(messages):
            # A read shared with another stream may hold more than this batch's room:
            # the rest is read again next time (positions have not moved past it).
            if room is not None and count and size + message.size > room:
                messages = messages[:count]
                break
            size += message.size
        replayed = self._deliver_all(messages)
        metrics.counts.replayed += len(replayed)
        return replayed, not history.more and messages is history.messages, size

    def _deliver_all(self, messages: list[Message]) -> list[bytes]:
        """Return the bytes of ``messages`` the client does not have yet; count them as delivered.

        (Live messages, one at a time, are counted by the view that renders them.)
        """
        chunks = [chunk for chunk in map(self.deliver, messages) if chunk]
        metrics.counts.delivered += len(chunks)
        return chunks

    def _mark(self, channel: str) -> AttachMark | None:
        """The source's mark of ``channel`` when the stream attached, if it gave one."""
        return self.marks.get(channel) if self.marks is not None else None

    def _reset(self, channel: str, cause: str) -> None:
        """Announce ``channel`` in the next stream-reset; ``cause`` labels the metric."""
        self.resets.append(channel)
        self.reset_causes.append(cause)

    def _start_now(self, source: HistorySource, channel: str) -> None:
        """Start a new client's ``channel`` where the source's live events begin for it.

        Where the source cannot tell, start at its tip, and let the first live
        event through even if it is not newer (it was on its way, never sent).
        """
        mark = self._mark(channel)
        start = source.start_position(channel, mark)
        if start is None:
            self.positions[channel] = source.current_tip(channel)
            self.fresh.add(channel)
        else:
            self.positions[channel] = start

    @staticmethod
    def _reset_event(channels: list[str]) -> bytes:
        data = encode_data({"channels": channels})
        return encode_event(sse_settings.SSE_RESET_EVENT, data).encode()


def _before(position: Position) -> Position:
    """Return the position just before ``position``, so that it is delivered."""
    ms, seq = position
    return (ms, seq - 1) if seq else (ms - 1, 2**64 - 1)
