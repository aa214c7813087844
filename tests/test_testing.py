"""``django_sse.testing``, used as a site's own tests would use it, on both view kinds."""

from __future__ import annotations

import time

import pytest

from django_sse import send_event
from django_sse.runtime import streams
from django_sse.testing import (
    StreamTimeout,
    live_events,
    memory_broker,
    read_events,
    sse_stream,
)
from tests.support.stats import counters


@memory_broker()
def test_a_redis_queue_view_test_fits_in_five_lines(client):
    with sse_stream(client, "/events/news/") as stream:
        send_event("update", {"n": 1}, channel="news")
        [event] = stream.read_events(1)
    assert (event.type, event.json()) == ("update", {"n": 1})
    assert len(streams) == 0  # closed on leaving the block


def test_read_events_takes_the_first_events_of_a_base_sse_view_and_runs_its_finally(client):
    """TickView from the test client: three ticks, then the generator's finally: has run."""
    finished = counters["iterator_finally"]

    events = read_events(client.get("/ticks/?interval=0.01"), 3)

    assert [(event.type, event.data) for event in events] == [
        ("tick", "0"),
        ("tick", "1"),
        ("tick", "2"),
    ]
    assert counters["iterator_finally"] == finished + 1
    assert len(streams) == 0


def test_a_stream_that_sends_too_little_fails_in_time_with_what_it_sent(client):
    """Two ticks asked of a stream that sends one and then nothing: StreamTimeout after the timeout."""
    started = time.monotonic()
    with pytest.raises(StreamTimeout) as raised:
        read_events(client.get("/late/?delay=30"), 1, timeout=0.5)
    spent = time.monotonic() - started

    assert raised.value.events == []
    assert "0 of 1 events" in str(raised.value)
    assert spent < 10  # the stream was ended, not waited for
    assert len(streams) == 0


@memory_broker()
def test_a_reconnecting_client_is_replayed_what_it_missed(client):
    with sse_stream(client, "/events/replayed/") as stream:
        first = send_event("n", "0", channel="replayed")
        stream.read_events(1)
    missed = [send_event("n", str(n), channel="replayed") for n in (1, 2)]

    with sse_stream(client, "/events/replayed/", last_event_id=first) as resumed:
        events = resumed.read_events(2)

    assert [(event.data, event.last_event_id) for event in events] == [
        ("1", missed[0]),
        ("2", missed[1]),
    ]


def test_a_refused_stream_is_an_assertion_naming_its_status(client):
    with pytest.raises(AssertionError, match="status 405"):
        read_events(client.post("/ticks/"), 1)


@pytest.mark.django_db(transaction=True)
def test_live_events_reads_a_stream_from_a_live_server(live_server):
    """pytest-django's live_server (Django's threaded server): events over real HTTP."""
    events = live_events(live_server.url + "/ticks/?interval=0.01", 2)

    assert [event.data for event in events] == ["0", "1"]


@pytest.mark.django_db(transaction=True)
def test_live_events_says_how_many_came_when_too_few_do(live_server):
    with pytest.raises(StreamTimeout, match="sent 1 of 2 events") as raised:
        live_events(live_server.url + "/ticks/?n=1", 2, timeout=2)

    assert [event.data for event in raised.value.events] == ["0"]
