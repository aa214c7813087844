"""The view's one answer in GRIP mode: the opening, what the client missed, and the hold.

A stream request from a client (through the proxy) is checked as any
stream (channels, permissions); the answer is the opening, the catch-up
after its ``Last-Event-ID`` (or a new client's id and initial events), and
the hold. The proxy's own requests, on the link a hold gave it, carry a
grant instead (see ``instructions``) and get what follows the ids of their
``Grip-Last``, without the opening. A catch-up larger than one answer
(``PAGE_BYTES``) goes in pages: each answer holds the stream at the
positions it reached, and asks the proxy to come back a second later. (An
answer without a hold would not move the proxy's ``Grip-Last``, and the
proxy shares the requests of one path and ``Grip-Last`` between its
connections, whatever the query: the position must be in ``Grip-Last``.)

History is read from the broker directly, not through the process's hub:
a process that only answers GRIP requests subscribes to nothing.
"""

from __future__ import annotations

from typing import Protocol

from django.http import HttpRequest, HttpResponse

from ..brokers.base import Broker, History, Message
from ..conf import sse_settings
from ..core.cursor import ChannelCursor
from ..core.positions import Position, encode_positions, format_position, parse_position
from ..core.runtime import get_broker
from ..exceptions import BrokerUnavailable
from ..permissions import user_key
from ..stream.engine import HEARTBEAT
from ..stream.responses import bad_request, forbidden
from .instructions import (
    GRANT_PARAMETER,
    NO_ID,
    Grant,
    hold_headers,
    next_link,
    parse_grip_last,
    read_grant,
)
from .names import stream_channel, user_channel

#: The most bytes of history one answer carries (one event larger than it goes alone).
#: Pushpin refuses a first answer over 100,000 bytes that it must read whole.
PAGE_BYTES = 64 * 1024


class GripView(Protocol):
    """What ``answer()`` needs of the view (``RedisQueueView``)."""

    request: HttpRequest
    channels: list[str]
    last_event_id: str | None
    last_event_id_sent: bool

    def check_channels(self) -> HttpResponse | None: ...

    def history_channels(self, channels: list[str]) -> list[str]: ...

    def new_cursor(
        self, channels: list[str], last_event_id: str | None, resuming: bool
    ) -> ChannelCursor: ...

    def broker_unreachable(self) -> HttpResponse: ...

    def opening(self) -> bytes: ...

    def _initial_chunk(self) -> bytes: ...

    def get_heartbeat_interval(self) -> float: ...


class BrokerHistory:
    """A cursor's ``HistorySource`` that reads the broker itself (no hub, no shared reads)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def read_history(
        self,
        name: str,
        after: Position,
        limit: int,
        mark: object = None,
        max_bytes: int | None = None,
    ) -> History:
        return self.broker.read_history(name, after, limit, max_bytes)

    def current_tip(self, name: str) -> Position:
        return self.broker.read_history(name, None, 0).tip

    def start_position(self, name: str, mark: object = None) -> Position | None:
        # What the proxy holds from: the tip now. An event published before the
        # proxy holds the connection shows as a gap in its prev-ids, and is asked for.
        return self.current_tip(name)

    def read_latest(self, name: str) -> Message | None:
        return self.broker.read_latest(name)


def answer(view: GripView) -> HttpResponse:
    """Return the GRIP answer to ``view``'s request (a 4xx/503 when refused)."""
    request = view.request
    token = request.GET.get(GRANT_PARAMETER)
    if token is None:
        refusal = view.check_channels()
        if refusal is not None:
            return refusal
        grant = Grant(tuple(view.channels), user_key(getattr(request, "user", None)))
        last_event_id = view.last_event_id
        resuming = view.last_event_id_sent
    else:
        max_age = 2 * sse_settings.SSE_GRIP_RECOVERY_INTERVAL + 60
        found = read_grant(token, max_age)
        if found is None:
            return forbidden("The GRIP link's grant is not valid (altered, or expired).")
        grant = found
        header = request.META.get("HTTP_GRIP_LAST")
        last_event_id = view.last_event_id
        if header is not None:
            last_ids = parse_grip_last(header)
            if last_ids is None:
                return bad_request("The Grip-Last header is malformed.")
            history = view.history_channels(list(grant.channels))
            last_event_id = _positions_of(history, last_ids) or last_event_id
        resuming = True
    channels = list(grant.channels)
    cursor = view.new_cursor(channels, last_event_id, resuming)
    several = len(cursor.history) > 1  # the ids are then tagged (see ``names``)
    try:
        caught_up, read = cursor.catch_up(BrokerHistory(get_broker()), PAGE_BYTES)
    except BrokerUnavailable:
        read = False
    if not read:
        return view.broker_unreachable()
    body = b""
    if token is None:
        body = view.opening()
        if not view.last_event_id_sent:
            body += view._initial_chunk()
    body += caught_up
    positions = encode_positions(cursor.positions) if cursor.positions else None
    link = next_link(request.path, grant, positions)
    response = HttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    prev_ids = {
        stream_channel(channel, several): (
            format_position(cursor.positions[channel]) if channel in cursor.positions else NO_ID
        )
        for channel in channels
    }
    if grant.user_key is not None:
        prev_ids[user_channel(grant.user_key)] = NO_ID
    # A catch-up with more to come is held at the positions it reached, and the proxy
    # asks for the rest a second later (or at once, when an event shows the gap).
    interval = round(sse_settings.SSE_GRIP_RECOVERY_INTERVAL) if cursor.synced else 1
    headers = hold_headers(
        prev_ids,
        link,
        recovery_interval=interval,
        keep_alive=HEARTBEAT,
        keep_alive_interval=max(1, round(view.get_heartbeat_interval())),
    )
    for name, value in headers.items():
        response[name] = value
    return response


def _positions_of(history: list[str], last_ids: dict[str, str]) -> str | None:
    """Return the ``Last-Event-ID`` equivalent of the proxy's ``Grip-Last`` ids, or None if it names none."""
    several = len(history) > 1
    positions: dict[str, Position] = {}
    for channel in history:
        position = parse_position(last_ids.get(stream_channel(channel, several), ""))
        if position is not None:
            positions[channel] = position
    return encode_positions(positions) if positions else None
