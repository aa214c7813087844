"""``RedisQueueView``: stream what ``send_event`` publishes to one or more channels.

The import path of the old django-sse is kept: ``from django_sse.redisqueue
import RedisQueueView, send_event``. The broker need not be Redis: without a
Redis setting the in-process broker serves the same API.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse

from .brokers import get_broker, get_hub
from .brokers.base import Message
from .channels import validate_channel
from .conf import sse_settings
from .exceptions import InvalidChannel, SseError
from .hub import SYNC, Recheck
from .mailbox import Mailbox
from .permissions import get_channel_manager
from .positions import Position, decode_positions, encode_positions
from .publish import send_event
from .responses import bad_request, forbidden
from .sse import encode_data, encode_event
from .views import BaseSseView

__all__ = ["RedisQueueView", "send_event"]

logger = logging.getLogger(__name__)

_HISTORY_BATCH = 500


class RedisQueueView(BaseSseView):
    """Stream every event published to the view's channel(s), resuming after ``Last-Event-ID``.

    Set ``redis_channel`` (or ``redis_channels``) in ``as_view()``, or override
    ``get_redis_channel()`` / ``get_redis_channels()`` to take them from the URL.
    """

    #: The channel to stream; None reads ``SSE_DEFAULT_CHANNEL`` (old name: ``REDIS_SSEQUEUE_CHANEL_NAME``).
    redis_channel: str | None = None
    #: Several channels on one stream; overrides ``redis_channel`` when set.
    redis_channels: list[str] | None = None
    #: Resume a reconnecting client from ``Last-Event-ID``; False streams live events only.
    replay: bool = True

    channels: list[str]

    def get_redis_channel(self) -> str:
        """Return the channel to stream. Override to take it from ``self.kwargs``."""
        return self.redis_channel or sse_settings.default_channel

    def get_redis_channels(self) -> list[str]:
        """Return the channels to stream; by default ``redis_channels`` or the one channel."""
        manager = get_channel_manager()
        if manager is not None:
            channels = manager.get_channels_for_request(self.request, self.kwargs)
            if channels is not None:
                return list(channels)
        if self.redis_channels is not None:
            return list(self.redis_channels)
        return [self.get_redis_channel()]

    def can_read_channel(self, request: HttpRequest, channel: str) -> bool:
        """Return whether ``request`` may read ``channel`` (default: yes).

        Called for every channel before the stream opens; a refusal is a 403.
        ``SSE_CHANNEL_MANAGER``, when set, is asked too: both must allow.
        """
        return True

    # Request checks ----------------------------------------------------------

    def check_request(self) -> HttpResponse | None:
        try:
            channels = list(dict.fromkeys(self.get_redis_channels()))
            for channel in channels:
                validate_channel(channel)
        except InvalidChannel as exc:
            return bad_request(str(exc))
        if not channels:
            return bad_request("The stream names no channel.")
        limit = sse_settings.SSE_MAX_CHANNELS
        if len(channels) > limit:
            return bad_request(
                f"The stream asks for {len(channels)} channels; SSE_MAX_CHANNELS allows {limit}."
            )
        for channel in channels:
            if not self._may_read(channel):
                return forbidden(f"You may not read the channel {channel!r}.")
        self.channels = channels
        return None

    def _may_read(self, channel: str) -> bool:
        """Ask the view's hook and the project's channel manager; both must allow."""
        if not self.can_read_channel(self.request, channel):
            return False
        manager = get_channel_manager()
        user = getattr(self.request, "user", None)
        return manager is None or manager.can_read_channel(user, channel)

    # The stream -------------------------------------------------------------

    def start(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._hub = get_hub()
        self._history = [
            channel
            for channel in self.channels
            if self.replay and sse_settings.history_enabled(channel)
        ]
        self._single = len(self._history) == 1 and len(self.channels) == 1
        self._resuming = self.replay and self.last_event_id is not None
        self._positions: dict[str, Position] = (
            decode_positions(self.last_event_id, self._history) if self._resuming else {}
        )
        self._sent_id = self.last_event_id
        self._synced = not self._history
        self._pending: list[Message] = []
        self._fresh: set[str] = set()  # new client's channels awaiting their first live event
        self._hub.attach(mailbox, self.channels)
        mailbox.put_control(SYNC)

    def stop(self) -> None:
        self._hub.detach(self._mailbox, self.channels)

    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]:
        """Return every event waiting as one write (a burst costs one syscall per client)."""
        out = []
        for item in items:
            if item is SYNC:
                out.append(self._sync())
            elif isinstance(item, Recheck):
                if not self._may_read(item.channel):
                    mailbox.end("permission revoked")
            elif self._synced:
                out.append(self._deliver(item))
            else:
                self._pending.append(item)
                if len(self._pending) > mailbox.limit:
                    mailbox.overflowed = True
        return [b"".join(out)]

    def idle(self, mailbox: Mailbox) -> bytes:
        # A history read that failed (Redis away) is retried at each heartbeat.
        return b"" if self._synced else self._sync()

    def closing(self, mailbox: Mailbox) -> bytes:
        return self._id_update() + super().closing(mailbox)

    def _deliver(self, message: Message) -> bytes:
        position = message.position
        channel = message.channel
        if position is None or channel not in self._positions:
            return message.frame if len(self.channels) == 1 else message.body
        if position <= self._positions[channel] and channel not in self._fresh:
            return b""  # already sent by the replay, or older than this stream's start
        # A new client's start is a tip read after subscribing: the first live event
        # may be older than it (published meanwhile) yet was never sent.
        self._fresh.discard(channel)
        self._positions[channel] = position
        if self._single:
            self._sent_id = message.id
            return message.frame
        self._sent_id = encode_positions(self._positions)
        return b"id: %s\n%s" % (self._sent_id.encode(), message.body)

    def _sync(self) -> bytes:
        """Catch up from history once every channel is subscribed; then go live."""
        if not self._history or not self._hub.ready(self.channels):
            if not self._history:
                return self._flush_pending()
            return b""
        broker = get_broker()
        out: list[bytes] = []
        reset: list[str] = []
        try:
            for channel in self._history:
                out.extend(self._catch_up(broker, channel, reset))
        except SseError as exc:
            logger.debug("History read failed, retrying later: %s", exc)
            return b"".join(out)
        self._synced = True
        self._resuming = True
        if reset:
            out.insert(0, self._reset_event(reset))
        out.append(self._flush_pending())
        out.append(self._id_update())
        return b"".join(out)

    def _catch_up(self, broker: Any, channel: str, reset: list[str]) -> list[bytes]:
        after = self._positions.get(channel)
        if after is None and not self._resuming:
            # A new client starts now: with the first live event it got, or at the tip.
            first = next((m for m in self._pending if m.channel == channel and m.position), None)
            if first is not None:
                self._positions[channel] = _before(first.position)
                return []
            tip = self._hub.tip(channel)
            if tip is None:
                tip = broker.read_history(channel, None, 0).tip
                self._hub.learn_tip(channel, tip)
            self._positions[channel] = tip
            self._fresh.add(channel)
            return []
        if after is None:
            reset.append(channel)  # a Last-Event-ID that says nothing of this channel
            self._positions[channel] = broker.read_history(channel, None, 0).tip
            return []
        out = []
        while True:
            history = broker.read_history(channel, self._positions[channel], _HISTORY_BATCH)
            if history.gap:
                reset.append(channel)
                self._positions[channel] = history.tip
                return out
            out.extend(self._deliver(message) for message in history.messages)
            if not history.more:
                return out

    def _flush_pending(self) -> bytes:
        self._synced = True
        pending, self._pending = self._pending, []
        return b"".join(self._deliver(message) for message in pending)

    def _id_update(self) -> bytes:
        """Return an ``id:`` line when the client's position is behind this stream's."""
        if not self._positions or not self._synced:
            return b""
        current = encode_positions(self._positions)
        if current == self._sent_id:
            return b""
        self._sent_id = current
        return b"id: %s\n\n" % current.encode()

    def _reset_event(self, channels: list[str]) -> bytes:
        data = encode_data({"channels": channels})
        return encode_event(sse_settings.SSE_RESET_EVENT, data).encode()


def _before(position: Position) -> Position:
    """Return the position just before ``position``, so that it is delivered."""
    ms, seq = position
    return (ms, seq - 1) if seq else (ms - 1, 2**64 - 1)
