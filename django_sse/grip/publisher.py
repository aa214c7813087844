"""The proxy's control API: what ``send_event`` and revocation publish to it.

Pushpin's ``POST <SSE_GRIP_URL>/publish/`` (Fastly Fanout's is the same
API under its service URL, authorized by ``SSE_GRIP_PUBLISH_HEADERS``). One
request per event carries two items, one per proxy channel of the event's
channel (see ``names``): the bytes a stream of one channel writes, and those
a stream of several writes. Each names the event's id and the id before it
(``prev-id``), so the proxy delivers it only to connections that have the
one before, and asks the view for the rest.

A publish the proxy does not take (unreachable, refused) is logged and not
raised: the event is in the broker's history already, and a retry by the
caller would publish it twice. Its clients get it when the proxy asks for
what follows, at the channel's next event (its ``prev-id`` shows the gap)
or within ``SSE_GRIP_RECOVERY_INTERVAL`` at the latest.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from ..brokers.base import Broker, Message
from ..conf import sse_settings
from ..core.positions import channel_tag, format_position, parse_position
from ..exceptions import BrokerUnavailable
from .instructions import NO_ID
from .names import stream_channel, user_channel

logger = logging.getLogger(__name__)


def publish(broker: Broker, channel: str, event: str, data: str, history: bool) -> str | None:
    """Publish through ``broker`` (its history, other processes), then give the event to the proxy.

    Return the event's id, as ``Broker.publish`` does; raise as it does,
    before the proxy is asked. An event without history on a channel with
    history is given the channel's newest id as both ids, so that it follows
    what the connections have; a recorded event that races it makes the
    proxy drop it (as a stream outage would: it has no history to replay).
    """
    if history:
        event_id, previous = broker.publish_in_sequence(channel, event, data)
        publish_event(channel, event, data, event_id, previous)
        return event_id
    broker.publish(channel, event, data, False)
    tip = None
    if sse_settings.history_enabled(channel):
        try:
            tip = format_position(broker.read_history(channel, None, 0).tip)
        except BrokerUnavailable:
            tip = None
    publish_event(channel, event, data, None, None, tip)
    return None


def publish_event(
    channel: str,
    event: str,
    data: str,
    event_id: str | None,
    previous: str | None,
    tip: str | None = None,
) -> bool:
    """Give the proxy one event of ``channel`` (``event_id`` None: an event without history).

    The bytes are those a stream writes for it (``Message.frame`` for a
    stream of one channel). ``tip``: for an event without history, the id
    the connections of a channel with history are at. Return whether the
    proxy took it.
    """
    position = None if event_id is None else parse_position(event_id)
    message = Message(channel, event, data, position)
    body = message.body.decode()
    if position is None or previous is None or parse_position(previous) is None:
        at = tip or NO_ID
        items = [_item(stream_channel(channel, several), body, at, at) for several in (False, True)]
    else:
        assert event_id is not None
        tagged = f"id: {channel_tag(channel)}:{event_id}\n{body}"
        items = [
            _item(stream_channel(channel, False), message.frame.decode(), event_id, previous),
            _item(stream_channel(channel, True), tagged, event_id, previous),
        ]
    return _post(items, f"event {event_id or event!r} of channel {channel!r}")


def close_user_streams(user_key: str) -> bool:
    """Have the proxy end every GRIP stream of the user ``user_key``; return whether it took it.

    Each client then opens its stream anew (``EventSource`` does), and the
    view checks it as any new stream: one still allowed resumes after its
    ``Last-Event-ID``, one refused gets its 403.
    """
    close = {
        "channel": user_channel(user_key),
        "id": NO_ID,
        "prev-id": NO_ID,
        "formats": {"http-stream": {"action": "close"}},
    }
    return _post([close], "the close of a user's streams")


def _item(
    proxy_channel: str, content: str, item_id: str = NO_ID, previous: str = NO_ID
) -> dict[str, Any]:
    return {
        "channel": proxy_channel,
        "id": item_id,
        "prev-id": previous,
        "formats": {"http-stream": {"content": content}},
    }


def _post(items: list[dict[str, Any]], what: str) -> bool:
    url = publish_url(sse_settings.SSE_GRIP_URL or "")
    headers = {"Content-Type": "application/json", **sse_settings.SSE_GRIP_PUBLISH_HEADERS}
    request = urllib.request.Request(
        url, data=json.dumps({"items": items}).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=sse_settings.SSE_PUBLISH_TIMEOUT) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The broker has the event: the proxy's recovery delivers it (see above).
        logger.warning(
            "The GRIP proxy at %s did not take %s (%s); its clients get it when the proxy "
            "next asks for what follows.",
            url,
            what,
            exc,
        )
        return False
    return True


def publish_url(base: str) -> str:
    """Return the control API's publish endpoint under ``base`` (``SSE_GRIP_URL``)."""
    return base.rstrip("/") + "/publish/"
