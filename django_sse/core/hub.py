"""The per-process hub: one broker subscription shared by every local stream.

Streams attach their mailbox to channels. The hub subscribes a channel when
its first local listener arrives and unsubscribes when the last leaves, so a
worker holds one subscriber connection however many streams it serves. Each
live message is put, already encoded, into the mailbox of every listener.

A channel is *ready* once the broker has confirmed its subscription: from
then on no live event can be missed, so a stream may read history and go
live. Whenever a channel becomes ready (first subscription or resubscription
after an outage), its listeners get a ``SYNC`` item and catch up from
history. The hub is the broker's ``BrokerListener``, and the one object a
stream's ``ChannelCursor`` reads history through.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .. import metrics
from ..brokers.base import Broker, History, Message
from ..conf import sse_settings
from ..exceptions import BrokerUnavailable
from .concurrency import Task, new_rlock, sleep
from .control import decode_control
from .mailbox import SYNC, UNSYNCED, Mailbox, Recheck
from .positions import ZERO, Position
from .shared_reads import AttachMark, Readiness, SharedReads

logger = logging.getLogger(__name__)


class _Channel:
    __slots__ = ("listeners", "ready", "tip", "learning", "readiness", "generation")

    def __init__(self, generation: int) -> None:
        self.listeners: dict[Mailbox, None] = {}
        self.ready = False
        #: The newest position since the subscription was confirmed (None: unknown).
        self.tip: Position | None = None
        #: The tip is being read from history, once for all the channel's streams.
        self.learning = False
        #: Set when the channel becomes ready: its tip then (for shared reads).
        self.readiness: Readiness | None = None
        #: The hub's generation when this channel's subscription was last lost (or it was made).
        self.generation = generation

    def become_ready(self) -> None:
        self.ready = True
        self.readiness = Readiness(self.tip)

    def lose(self, generation: int) -> None:
        """The subscription is lost: not ready, tip unknown, until confirmed again."""
        self.ready = False
        self.readiness = None
        self.learning = False
        self.tip = None
        self.generation = generation

    def advance(self, position: Position) -> None:
        """Move the tip to ``position`` if that is newer."""
        if self.tip is None or position > self.tip:
            self.tip = position


class Hub:
    """Fans the broker's live events out to this process's streams."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._channels: dict[str, _Channel] = {}
        # SUBSCRIBE commands sent but not yet confirmed, per channel name. Replies
        # come in command order, so a channel is ready only when none is pending.
        self._pending: dict[str, int] = {}
        # Re-entrant: the memory broker confirms a subscription from inside subscribe().
        self._lock = new_rlock()
        # Counts lost subscriptions (all channels', or some channels'): a tip read, an attach
        # mark or a shared read of a channel is stale once its ``_Channel.generation`` moved.
        self._generation = 0
        # Channels whose tip is read, waiting for the broker's on_caught_up(token).
        self._catching_up: dict[str, tuple[str, _Channel, int]] = {}
        self._catch_ups = 0
        #: Moves on every attach and detach: a presence report of the same value needs no new walk.
        self.membership = 0
        #: History reads shared by the streams of a channel (a reconnect storm).
        self.reads = SharedReads(broker, self._readiness)
        broker.start(self)

    # Called by streams -----------------------------------------------------

    def attach(self, mailbox: Mailbox, channels: Iterable[str]) -> dict[str, AttachMark]:
        """Deliver the live events of ``channels`` to ``mailbox``; return its marks.

        A mark says what the hub had fanned out of a ready channel before
        ``mailbox`` joined it; ``read_history`` uses it to share reads.
        """
        new = []
        marks: dict[str, AttachMark] = {}
        with self._lock:
            for name in channels:
                channel = self._channels.get(name)
                if channel is None:
                    channel = self._channels[name] = _Channel(self._generation)
                    new.append(name)
                elif channel.ready and channel.tip is not None:
                    marks[name] = (channel.tip, channel.generation)
                channel.listeners[mailbox] = None
            self.membership += 1
        if new:
            self._subscribe(new)
        return marks

    def detach(self, mailbox: Mailbox, channels: Iterable[str]) -> None:
        """Stop delivering to ``mailbox``; unsubscribe channels nobody listens to."""
        gone = []
        with self._lock:
            self.membership += 1
            for name in channels:
                channel = self._channels.get(name)
                if channel is None:
                    continue
                channel.listeners.pop(mailbox, None)
                if not channel.listeners:
                    del self._channels[name]
                    self.reads.forget(name)
                    gone.append(name)
            if gone:
                logger.debug("Unsubscribing %s", gone)
                self.broker.unsubscribe(gone)

    def ready(self, channels: Iterable[str]) -> bool:
        """Return whether every one of ``channels`` is subscribed for sure."""
        return all(
            (channel := self._channels.get(name)) is not None and channel.ready for name in channels
        )

    def read_history(
        self,
        name: str,
        after: Position,
        limit: int,
        mark: AttachMark | None = None,
        max_bytes: int | None = None,
    ) -> History:
        """Return up to ``limit`` retained messages of ``name`` after ``after``.

        Streams resuming from the same position share one broker read (see
        ``shared_reads``; ``mark`` is the stream's from ``attach()``).
        ``max_bytes`` bounds the read (see ``Broker.read_history``). Raises
        ``BrokerUnavailable`` when the broker cannot be reached.
        """
        channel = self._channels.get(name)
        generation = self._generation if channel is None else channel.generation
        return self.reads.read(name, after, limit, generation, mark, max_bytes)

    def read_latest(self, name: str) -> Message | None:
        """Return the newest retained message of ``name`` (a latest-value channel's snapshot).

        Raises ``BrokerUnavailable`` when the broker cannot be reached.
        """
        return self.broker.read_latest(name)

    def current_tip(self, name: str) -> Position:
        """Return the newest position of ``name``: known since it became ready, else read.

        A tip read from the broker is remembered for the streams that open
        after it. Raises ``BrokerUnavailable`` when it must be read and cannot.
        """
        known = self._ready_tip(name)
        if known is not None:
            return known
        tip = self._read_tip(name)
        channel = self._channels.get(name)
        if channel is not None and channel.ready:
            channel.advance(tip)
        return tip

    def start_position(self, name: str, mark: AttachMark | None = None) -> Position | None:
        """Return the position after which every event of ``name`` reaches a stream live.

        A new client starts there, so the id it is told never covers an event
        still on its way to it. That is the hub's tip when the stream attached
        (its ``mark``, from ``attach()``) while the subscription it was taken
        in lasts; for a stream that attached before the channel was ready,
        the channel's tip then (``0-0`` for an empty channel): the channel
        became ready only once the broker had delivered every event that tip
        covers (``catch_up_live``), so whatever is newer reaches the stream's
        mailbox after it. None when the channel is not ready.
        """
        channel = self._channels.get(name)
        if channel is None or not channel.ready:
            return None
        if mark is not None and mark[1] == channel.generation:
            return mark[0]
        if channel.readiness is None:
            return None
        return ZERO if channel.readiness.tip is None else channel.readiness.tip

    def channel_names(self) -> list[str]:
        return list(self._channels)

    def listener_count(self) -> int:
        return sum(len(channel.listeners) for channel in list(self._channels.values()))

    def presence(self) -> dict[str, tuple[int, frozenset[str]]]:
        """Return, per channel, how many local streams read it and their owners' keys.

        Anonymous streams count in the number only. The presence reporter
        calls it once per ``SSE_PRESENCE_INTERVAL``; it walks every listener.
        """
        with self._lock:
            return {
                name: (
                    len(channel.listeners),
                    frozenset(m.owner for m in channel.listeners if m.owner is not None),
                )
                for name, channel in self._channels.items()
            }

    def close(self) -> None:
        self.broker.close()

    # Called by the broker (BrokerListener) ---------------------------------

    def on_connected(self) -> int:
        metrics.record_broker_connected(True, restored=self._generation > 0)
        names = self.channel_names()
        if names:
            self._subscribe(names)
        return len(names)

    def on_subscribed(self, channel: str) -> None:
        name = channel
        with self._lock:
            pending = self._pending.get(name, 0) - 1
            if pending > 0:
                self._pending[name] = pending
                return
            self._pending.pop(name, None)
            state = self._channels.get(name)
            if state is None or state.ready or state.learning:
                return
            learn = sse_settings.history_enabled(name)
            if learn:
                state.learning = True
                generation = state.generation
            else:
                state.become_ready()
                listeners = tuple(state.listeners)
        logger.debug("Subscribed to %r", name)
        if not learn:
            self._notify(listeners)
        elif self.broker.blocking_reads:
            Task(self._learn_tip, name, state, generation, name="django-sse-tip")
        else:
            self._learn_tip(name, state, generation)

    def on_message(self, message: Message) -> None:
        channel = self._channels.get(message.channel)
        if channel is None:
            return
        if message.position is not None and (channel.ready or channel.learning):
            channel.advance(message.position)
        size = message.size  # measured once for every mailbox
        for mailbox in tuple(channel.listeners):
            mailbox.put(message, size)

    def on_control(self, payload: str) -> None:
        """Act on a control message published by any process (see ``control``)."""
        change = decode_control(payload)
        if change is None:
            logger.error("Ignoring a malformed django-sse control message: %.200r", payload)
            return
        channel = self._channels.get(change.channel)
        if channel is None:
            return
        for mailbox in tuple(channel.listeners):
            if mailbox.owner == change.user:
                mailbox.put_control(Recheck(change.channel))

    def on_disconnected(self) -> None:
        """The subscription is lost: nothing is ready until the broker resubscribes."""
        metrics.record_broker_connected(False)
        with self._lock:
            self._generation += 1
            self._pending.clear()
            self._catching_up.clear()
            listeners: set[Mailbox] = set()
            for channel in self._channels.values():
                channel.lose(self._generation)
                listeners.update(channel.listeners)
        for mailbox in listeners:
            mailbox.put_control(UNSYNCED)

    def on_lost(self, channels: list[str]) -> None:
        """The subscriptions of ``channels`` alone are lost: they are not ready until confirmed again.

        Their pending subscriptions are forgotten (the broker resubscribes
        them itself, and ``on_subscribed`` follows for each); streams on a
        channel that was ready hold live events until it is ready again and
        they caught up from history.
        """
        with self._lock:
            self._generation += 1
            listeners: set[Mailbox] = set()
            for name in channels:
                self._pending.pop(name, None)
                channel = self._channels.get(name)
                if channel is None:
                    continue
                if channel.ready:
                    listeners.update(channel.listeners)
                channel.lose(self._generation)
            lost = set(channels)
            for token, entry in list(self._catching_up.items()):
                if entry[0] in lost:
                    del self._catching_up[token]
        for mailbox in listeners:
            mailbox.put_control(UNSYNCED)

    # Inside ----------------------------------------------------------------

    def _readiness(self, name: str) -> Readiness | None:
        channel = self._channels.get(name)
        return channel.readiness if channel is not None and channel.ready else None

    def _ready_tip(self, name: str) -> Position | None:
        channel = self._channels.get(name)
        return channel.tip if channel is not None and channel.ready else None

    def _read_tip(self, name: str) -> Position:
        return self.broker.read_history(name, None, 0).tip

    def _learn_tip(self, name: str, channel: _Channel, generation: int) -> None:
        """Read the channel's tip once, for every stream that opens on it; then it is ready."""
        delay = 0.05
        while True:
            if channel.generation != generation or self._channels.get(name) is not channel:
                return
            try:
                tip = self._read_tip(name)
                break
            except BrokerUnavailable as exc:
                logger.debug("Reading the tip of %r failed, retrying: %s", name, exc)
                sleep(delay)
                delay = min(delay * 2, 2.0)
        with self._lock:
            if channel.generation != generation or self._channels.get(name) is not channel:
                return
            channel.advance(tip)
            self._catch_ups += 1
            token = str(self._catch_ups)
            self._catching_up[token] = (name, channel, generation)
        # Ready only once the live copies of the events that read saw are in: then a
        # new stream can start at the tip with nothing older still on its way.
        if not self.broker.catch_up_live(name, token):
            with self._lock:  # the subscription is lost; on_connected() starts again
                self._catching_up.pop(token, None)

    def on_caught_up(self, token: str) -> None:
        with self._lock:
            entry = self._catching_up.pop(token, None)
            if entry is None:
                return
            name, channel, generation = entry
            if channel.generation != generation or self._channels.get(name) is not channel:
                return
            channel.learning = False
            channel.become_ready()
            listeners = tuple(channel.listeners)
        self._notify(listeners)

    @staticmethod
    def _notify(listeners: tuple[Mailbox, ...]) -> None:
        for mailbox in listeners:
            mailbox.put_control(SYNC)

    def _subscribe(self, names: list[str]) -> None:
        # Count and send under the lock, so a confirmation cannot overtake its count; a
        # command that could not be sent (no connection) is resent on reconnection.
        logger.debug("Subscribing %s", names)
        with self._lock:
            for name in names:
                self._pending[name] = self._pending.get(name, 0) + 1
            if not self.broker.subscribe(names):
                for name in names:
                    self._pending[name] -= 1
                    if not self._pending[name]:
                        del self._pending[name]
