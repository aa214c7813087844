"""``RedisQueueView``: stream what ``send_event`` publishes to one or more channels.

The import path of the old django-sse is kept: ``from django_sse.redisqueue
import RedisQueueView, send_event``. The broker need not be Redis: without a
Redis setting the in-process broker serves the same API.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from . import metrics
from .brokers.base import Message
from .conf import sse_settings
from .core.channels import validate_channel
from .core.concurrency import call_hook, call_later
from .core.cursor import ChannelCursor
from .core.database import release_connections
from .core.mailbox import NEXT_BATCH, SYNC, UNSYNCED, EndReason, Mailbox, Recheck
from .core.runtime import get_hub
from .exceptions import InvalidChannel
from .grip import hold as grip_hold
from .permissions import current_request, get_channel_manager
from .publish import send_event
from .stream.cors import add_cors_headers
from .stream.engine import Blocking
from .stream.responses import bad_request, forbidden
from .views import BaseSseView, overridden_steps

__all__ = ["RedisQueueView", "send_event"]

logger = logging.getLogger(__name__)


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
    #: Answer in GRIP mode (a proxy holds the stream: see ``django_sse.grip``) when
    #: ``SSE_GRIP_URL`` is set; False streams from this process all the same.
    grip: bool = True

    #: ``get_initial_events()`` and ``can_read_channel()`` run within a catch-up or a
    #: recheck, which are blocking steps already.
    step_hooks = (
        (Blocking.OPENING, ("start", "opening")),
        (Blocking.RENDER, ("render",)),
        (Blocking.IDLE, ("idle",)),
        (Blocking.CLOSING, ("closing",)),
        (Blocking.STOP, ("stop",)),
    )

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

        Called for every channel before the stream opens; a refusal is a 403;
        and again after ``channel_permission_changed()``, with ``request.user``
        loaded anew from the session and the database (see
        ``permissions.current_request()``: a user set by other means than the
        session, e.g. a token, is the one loaded at the opening). ``SSE_CHANNEL_MANAGER``,
        when set, is asked too: both must allow. Override it as a plain method
        (it runs off the event loop under every server, as every overridden
        hook does, so ``request.user`` and the ORM work: before the stream in
        the request's thread, a recheck in the runtime's executor under ASGI)
        or as ``async def`` (``user = await request.auser()``), which is run
        through asgiref's ``async_to_sync``: pitfall, a thread hop per call.
        """
        return True

    # Request checks ----------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if self.grip_enabled():
            return add_cors_headers(request, grip_hold.answer(self))
        return super().get(request, *args, **kwargs)

    def grip_enabled(self) -> bool:
        """Return whether this view answers in GRIP mode: ``grip`` and ``SSE_GRIP_URL`` set."""
        return self.grip and sse_settings.SSE_GRIP_URL is not None

    def check_request(self) -> HttpResponse | None:
        refusal = self.check_channels()
        if refusal is not None:
            return refusal
        if get_hub().broker.never_reached():
            return self.broker_unreachable()
        return None

    def check_channels(self) -> HttpResponse | None:
        """Check the stream's channels and the client's right to read them; set ``channels``.

        Return the 400/403 that refuses the stream, or None.
        """
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
            if not self._may_read(self.request, channel):
                return forbidden(f"You may not read the channel {channel!r}.")
        self.channels = channels
        return None

    def broker_unreachable(self) -> HttpResponse:
        """Answer a stream that opens while this process has never reached its broker: a 503.

        The default is plain text with ``Retry-After: 5``, sent before any
        byte of a stream, rather than a stream that would stay silent. Only
        until the broker is first reached: a later outage leaves new streams
        open, and they catch up from history when it returns. Pitfall: a
        plain ``EventSource`` does not retry after a 503 (``readyState``
        CLOSED); django-sse's browser client opens the stream again later.
        """
        response = HttpResponse(
            "This server has not reached its message broker yet; retry later.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = "5"
        return response

    def _may_read(self, request: HttpRequest, channel: str) -> bool:
        """Ask the view's hook and the project's channel manager; both must allow."""
        if not call_hook(self.can_read_channel, request, channel):
            return False
        manager = get_channel_manager()
        if manager is None:
            return True
        user = getattr(request, "user", None)
        return bool(call_hook(manager.can_read_channel, user, channel))

    def _may_still_read(self, channel: str) -> bool:
        """Ask again, for the user as a new request would load them now; then let go of the database."""
        try:
            return self._may_read(current_request(self.request), channel)
        finally:
            release_connections()  # this greenlet's (the stream's) or executor thread's

    # The stream -------------------------------------------------------------

    def get_max_last_event_id_length(self) -> int:
        # Room for a position per channel (about 45 bytes in the worst case).
        return max(super().get_max_last_event_id_length(), 50 * sse_settings.SSE_MAX_CHANNELS)

    def history_channels(self, channels: list[str]) -> list[str]:
        """Return those of ``channels`` whose events carry ids and are replayed (none without ``replay``)."""
        return [c for c in channels if self.replay and sse_settings.history_enabled(c)]

    def new_cursor(
        self, channels: list[str], last_event_id: str | None, resuming: bool
    ) -> ChannelCursor:
        """Return the replay state of a stream of ``channels`` whose client is at ``last_event_id``.

        ``resuming``: the client brought a position (even an unusable one).
        The view's stream and its GRIP answer (``django_sse.grip.hold``) both
        start from it.
        """
        history = self.history_channels(channels)
        latest = frozenset(c for c in history if sse_settings.latest_value(c))
        return ChannelCursor(channels, history, last_event_id, self.replay and resuming, latest)

    def start(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._hub = get_hub()
        self._cursor = self.new_cursor(self.channels, self.last_event_id, self.last_event_id_sent)
        # A new client's initial events follow its first catch-up (see _catch_up).
        self._initial_pending = not self.last_event_id_sent
        #: A NEXT_BATCH is in the mailbox (at most one: one batch of history per write).
        self._next_batch_queued = False
        self._cursor.attached(self._hub.attach(mailbox, self.channels))
        mailbox.put_control(SYNC)

    def stop(self) -> None:
        self._hub.detach(self._mailbox, self.channels)

    def render(self, items: list[Any], mailbox: Mailbox) -> list[bytes]:
        """Return every event waiting as one write (a burst costs one syscall per client)."""
        cursor = self._cursor
        out = []
        delivered = 0
        caught_up = False  # one batch of history per write, so that the client paces the reads
        if not cursor.synced:
            items = _live_before_catch_up(items)
        for item in items:
            if item is SYNC or item is NEXT_BATCH:
                if item is SYNC:
                    if cursor.synced and cursor.history:
                        # Another of the stream's channels became ready after the catch-up
                        # that all of them allowed: nothing was lost (a lost subscription
                        # sends UNSYNCED first). Reading again would hold live events
                        # meanwhile, and deliver them after history events published later.
                        continue
                    cursor.restart()  # (re)subscribed: every channel may have missed events
                else:
                    self._next_batch_queued = False
                    if cursor.synced:
                        continue  # a SYNC's catch-up finished it meanwhile
                if caught_up:
                    self._next_batch(mailbox)
                else:
                    caught_up = True
                    out.append(self._catch_up(mailbox))
            elif item is UNSYNCED:
                # Live events of the next subscription wait for the catch-up from history.
                cursor.lose_sync()
            elif isinstance(item, Recheck):
                if not self._may_still_read(item.channel):
                    mailbox.end(EndReason.PERMISSION_REVOKED)
                    break  # nothing queued after the revocation reaches the client
            else:
                chunk = cursor.receive(item, mailbox.limit, mailbox.max_bytes)
                if chunk:
                    out.append(chunk)
                    delivered += 1
                    continue
                mailbox.hold(cursor.held_bytes)  # held during a catch-up: it counts
                if chunk is None:
                    # Too much held during a catch-up: end after writing what was caught
                    # up (and the id), so the client resumes from there. No hang-up: the
                    # stream is not blocked on its client, as overflow() assumes.
                    mailbox.end(EndReason.OVERFLOW)
        if delivered:
            metrics.counts.delivered += delivered
            position = items[-1].position if isinstance(items[-1], Message) else None
            if position is not None:
                metrics.sample_lag(position[0])
        return [b"".join(out)]

    def blocking_steps(self, items: list[Any]) -> Blocking:
        """Return the steps that may block: a catch-up, a recheck, and every overridden hook.

        A catch-up reads history (and ``get_initial_events()``) and a recheck
        asks ``can_read_channel()`` and the channel manager: off the loop under
        ASGI. ``start()`` and ``stop()`` subscribe and unsubscribe, which
        block where the broker says so (``Broker.blocking_subscriptions``:
        the cluster's); elsewhere they are a lock and a command written, kept
        on the loop.
        """
        steps = overridden_steps(type(self), RedisQueueView)
        hub = getattr(self, "_hub", None) or get_hub()  # before start(): the process's
        if hub.broker.blocking_subscriptions:
            steps |= Blocking.OPENING | Blocking.STOP
        if any(item is SYNC or item is NEXT_BATCH or isinstance(item, Recheck) for item in items):
            steps |= Blocking.RENDER
        cursor = getattr(self, "_cursor", None)
        if cursor is not None and not cursor.synced and not self._next_batch_queued:
            steps |= Blocking.IDLE  # idle() catches up
        return steps

    def idle(self, mailbox: Mailbox) -> bytes:
        # A catch-up that failed (Redis away) is retried at the latest at each heartbeat;
        # one going in batches has its NEXT_BATCH waiting already.
        if self._cursor.synced or self._next_batch_queued:
            return b""
        return self._catch_up(mailbox)

    def closing(self, mailbox: Mailbox) -> bytes:
        return self._cursor.id_update() + super().closing(mailbox)

    def _catch_up(self, mailbox: Mailbox) -> bytes:
        """Catch up from history once every channel is subscribed; then go live.

        History comes in batches within the stream's byte budget
        (``SSE_STREAM_BUFFER_BYTES``, less what it holds already): one per
        write, the next read once the client has taken it.
        """
        cursor = self._cursor
        if not cursor.history:
            chunk = self._take_initial() + cursor.flush_held()
            mailbox.hold(0)
            return chunk
        if mailbox.ending or not self._hub.ready(self.channels):
            return b""  # the client left, or the hub sends SYNC again once subscribed
        room = mailbox.max_bytes
        if room is not None:
            room = max(room - mailbox.bytes_held, 1)
        chunk, read = cursor.catch_up(self._hub, room)
        mailbox.hold(cursor.held_bytes)
        if read and not cursor.synced:
            self._next_batch(mailbox)
        elif read:
            # The stream's start is fixed now: whatever the initial events were read
            # from, every event published after it follows them.
            chunk = self._take_initial() + chunk
        else:
            delay = min(0.1 * 2**cursor.failures, 5.0) * random.uniform(0.5, 1.0)
            logger.debug("History read failed; retrying in %.2fs.", delay)
            call_later(delay, _sync_unless_ending, mailbox)
        return chunk

    def _next_batch(self, mailbox: Mailbox) -> None:
        """Have the stream read the next batch of history after this write."""
        if not self._next_batch_queued:
            self._next_batch_queued = True
            mailbox.put_control(NEXT_BATCH)

    def _take_initial(self) -> bytes:
        if not self._initial_pending:
            return b""
        self._initial_pending = False
        return self._initial_chunk()

    def _opening_initial(self) -> bytes:
        return b""  # sent after the first catch-up instead, once the start is fixed


def _sync_unless_ending(mailbox: Mailbox) -> None:
    if not mailbox.ending:
        mailbox.put_control(SYNC)


def _live_before_catch_up(items: list[Any]) -> list[Any]:
    """Move the live events taken together with the first catch-up marker to before it.

    They reached the stream's mailbox already; a cursor that is not in sync
    holds them, as it would have had they come a moment sooner. Otherwise a
    new client's catch-up, which starts where the hub's live events begin for
    it (possibly after these very events, when the hub learned its tip late),
    would count them as already covered and never send them.
    """
    for index, item in enumerate(items):
        if item is SYNC or item is NEXT_BATCH:
            end = index + 1
            while end < len(items) and type(items[end]) is Message:
                end += 1
            if end == index + 1:
                return items
            return [*items[:index], *items[index + 1 : end], item, *items[end:]]
        if type(item) is not Message:
            return items
    return items
