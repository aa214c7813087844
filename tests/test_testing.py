"""``django_sse.testing``, used as a site's own tests would use it, on both view kinds."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from django_sse import channel_permission_changed, send_event
from django_sse.core.runtime import streams
from django_sse.testing import (
    StreamTimeout,
    live_events,
    memory_broker,
    read_events,
    sse_stream,
)
from tests.support.django_runner import run_django_tests
from tests.support.stats import counters
from tests.testing_urls import GatedView


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


@pytest.mark.urls("tests.testing_urls")
def test_a_stream_that_sends_too_little_fails_in_time_with_what_it_sent(client):
    """An event asked of a stream that sends nothing yet: StreamTimeout, the stream ended, not waited for."""
    GatedView.gate.clear()
    GatedView.finished.clear()
    try:
        with pytest.raises(StreamTimeout) as raised:
            read_events(client.get("/gated/"), 1, timeout=0.5)
        # Returned while iterator() still waits on its gate: the helper did not wait for it.
        assert not GatedView.finished.is_set()
    finally:
        GatedView.gate.set()

    assert raised.value.events == []
    assert "0 of 1 events" in str(raised.value)
    assert "timed out" in str(raised.value)
    assert GatedView.finished.wait(60)  # released, the producer sees the ended stream and stops
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


# A logged-in stream in the test's transaction ------------------------------
# Each test below is followed by one that uses the database: a stream that
# closed the test's connection broke the rollback and the tests after it.


def _member(name: str = "ann") -> User:
    user = User.objects.create_user(name)
    user.groups.add(Group.objects.get_or_create(name="club")[0])
    return user


@pytest.mark.urls("tests.testing_urls")
@pytest.mark.django_db
def test_a_logged_in_stream_leaves_the_tests_transaction_alone(client):
    """django_db: can_read_channel queries the groups; the test's queries work after the stream."""
    client.force_login(_member())
    with memory_broker(), sse_stream(client, "/member/club/") as stream:
        send_event("news", "1", channel="club")
        [event] = stream.read_events(1)

    assert event.data == "1"
    _member("bob")
    assert User.objects.count() == 2


@pytest.mark.urls("tests.testing_urls")
@pytest.mark.django_db
def test_a_revoked_stream_leaves_the_tests_transaction_alone(client):
    """django_db: the permission recheck reads the session and groups again, in the test's transaction."""
    user = _member()
    client.force_login(user)
    with memory_broker(), sse_stream(client, "/member/club/") as stream:
        user.groups.clear()
        channel_permission_changed(user, "club")
        with pytest.raises(StreamTimeout, match="it ended"):
            stream.read_events(1)

    assert not Group.objects.get(name="club").user_set.exists()


@pytest.mark.django_db
def test_the_test_after_the_streams_finds_an_empty_database():
    """The streams' tests were rolled back, and this test's queries work."""
    assert not User.objects.exists()
    _member("carol")
    assert User.objects.count() == 1


def test_testcase_streams_pass_under_djangos_own_runner():
    """``manage.py test`` of TestCase classes that read logged-in streams, then use the database."""
    result = run_django_tests("tests.testcase_streams")

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 4 tests" in result.stderr
    assert "\nOK\n" in result.stderr
