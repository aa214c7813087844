"""Initial state: ``get_initial_events()`` and latest-value channels (``SSE_LATEST_VALUE_CHANNELS``).

Both are checked against a publisher running at the same time as the streams
open: a new client gets its snapshot, then every later event, nothing twice.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.test import RequestFactory

from django_sse import send_event
from django_sse.testing import memory_broker, sse_stream
from tests import views
from tests.support.redis_helpers import connect


class Publisher(threading.Thread):
    """Updates ``views.STATE[channel]`` to n, then publishes event "n" with data n; n = 1, 2, ..."""

    def __init__(self, channel: str, count: int, pause: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.channel, self.count, self.pause = channel, count, pause
        self.ids: dict[int, str] = {}

    def run(self) -> None:
        for n in range(1, self.count + 1):
            views.STATE[self.channel] = n  # the state first, then the event: no gap
            self.ids[n] = send_event("n", {"n": n}, channel=self.channel)
            time.sleep(self.pause)


@memory_broker()
def test_a_new_client_gets_the_snapshot_then_every_later_event_once(client):
    """Streams open while events flow: state s, then the events after s, contiguous, none twice."""
    views.STATE.clear()
    publisher = Publisher("counted", 4000)
    publisher.start()
    seen = []
    try:
        while publisher.is_alive() and len(seen) < 20:
            with sse_stream(client, "/state/counted/") as stream:
                [state] = stream.read_events(1)
                snapshot = state.json()["n"]
                if snapshot + 30 > publisher.count:
                    break
                live = [event.json()["n"] for event in stream.read_events(30)]
                ids = [event.last_event_id for event in stream.events[1:31]]
            seen.append((state.type, snapshot, live, ids))
    finally:
        publisher.join(30)

    assert len(seen) >= 5, "the publisher finished before the streams could open"
    for kind, snapshot, live, ids in seen:
        assert kind == "state"
        assert live == list(range(live[0], live[0] + 30))  # in order, nothing missing
        assert len(set(ids)) == 30  # no event twice
        # No gap after the snapshot. Events published between the stream's start and the
        # snapshot come too, just before it (at-least-once): how many depends on how long
        # get_initial_events() waited for the CPU, so only their order is asserted.
        assert live[0] <= snapshot + 1


@memory_broker()
def test_a_reconnecting_client_gets_no_snapshot_but_what_it_missed(client):
    views.STATE["again"] = 7
    with sse_stream(client, "/state/again/") as stream:
        [state] = stream.read_events(1)
        views.STATE["again"] = 8
        first = send_event("n", {"n": 8}, channel="again")
        stream.read_events(1)
    views.STATE["again"] = 9
    send_event("n", {"n": 9}, channel="again")

    with sse_stream(client, "/state/again/", last_event_id=first) as resumed:
        [event] = resumed.read_events(1)

    assert (state.type, state.json()) == ("state", {"n": 7})
    assert (event.type, event.json()) == ("n", {"n": 9})


def test_a_base_sse_view_sends_its_initial_events_before_the_iterators(client):
    """TickView with get_initial_events: the state comes in the first write, before tick 0."""
    from django_sse.testing import read_events

    class StateTicks(views.TickView):
        def get_initial_events(self):
            return [("state", {"ready": True}), ("note", "plain text")]

    request_factory = RequestFactory()
    response = StateTicks.as_view()(request_factory.get("/ticks/?interval=0.01"))
    events = read_events(response, 3)
    resumed = read_events(
        StateTicks.as_view()(request_factory.get("/ticks/", HTTP_LAST_EVENT_ID="3")), 1
    )

    assert [(event.type, event.data) for event in events[1:]] == [
        ("note", "plain text"),
        ("tick", "0"),
    ]
    assert (events[0].type, events[0].json()) == ("state", {"ready": True})
    assert [event.type for event in resumed] == ["tick"]


def test_a_latest_value_channel_gives_a_new_client_the_newest_event_at_once(client, settings):
    settings.SSE_LATEST_VALUE_CHANNELS = ["price-*"]
    with memory_broker():  # inside the test: pytest-django's settings are restored after it
        send_event("price", "1.00", channel="price-eur")
        newest = send_event("price", "1.05", channel="price-eur")
        send_event("price", "9", channel="other")

        with sse_stream(client, "/events/price-eur/") as stream:
            [event] = stream.read_events(1, timeout=1)
            send_event("price", "1.10", channel="price-eur")
            [live] = stream.read_events(1)
        with sse_stream(client, "/events/other/") as plain:
            send_event("price", "10", channel="other")
            [not_latest] = plain.read_events(1)

    assert (event.data, event.last_event_id) == ("1.05", newest)
    assert live.data == "1.10"
    assert not_latest.data == "10"  # not a latest-value channel: live events only


def test_a_latest_value_channel_under_a_concurrent_publisher_has_no_gap_and_no_duplicate(
    client, settings
):
    settings.SSE_LATEST_VALUE_CHANNELS = ["ticker"]
    runs = []
    with memory_broker():
        publisher = Publisher("ticker", 4000)
        publisher.start()
        try:
            while publisher.is_alive() and len(runs) < 20:
                with sse_stream(client, "/events/ticker/") as stream:
                    events = stream.read_events(20)
                runs.append([event.json()["n"] for event in events])
        finally:
            publisher.join(30)

    assert len(runs) >= 5
    for run in runs:
        assert run == list(range(run[0], run[0] + 20)), run


@pytest.mark.integration
def test_latest_value_from_redis_under_gunicorn(servers, redis_url, settings):
    """With Redis (XREVRANGE) in a served worker: the newest event first, then live ones."""
    settings.SSE_REDIS_URL = redis_url
    site = servers.site(redis_url, settings={"SSE_LATEST_VALUE_CHANNELS": ["status"]})
    send_event("status", "old", channel="status")
    newest = send_event("status", "current", channel="status")

    client = connect(site.port, "/events/status/")
    try:
        [event] = client.read_events(1, timeout=10)
    finally:
        client.close()

    assert (event.type, event.data, event.last_event_id) == ("status", "current", newest)
