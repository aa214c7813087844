"""``RedisQueueView`` against a real redis-server and a gunicorn gevent worker.

Events are published from this test process with ``send_event``: another
process than the server's, as a Celery worker or a shell would.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

import pytest
from django.test import RequestFactory

from django_sse import send_event
from django_sse.core.mailbox import Mailbox, Recheck
from django_sse.eventstream import parse
from django_sse.redisqueue import RedisQueueView
from tests.support.redis_helpers import data_of, eventually, get_stats, open_live
from tests.support.sse import SseClient


@pytest.fixture(scope="module")
def server(module_servers, redis_server):
    """One gunicorn gevent worker of the test project, on the session's redis-server."""
    return module_servers.site(redis_server.url, heartbeat="1")


@pytest.fixture
def publish(settings, redis_url):
    """``send_event`` of this process, publishing to the session's (flushed) Redis."""
    settings.SSE_REDIS_URL = redis_url
    return send_event


def _multi(count: int) -> str:
    return "/multi/?" + urllib.parse.urlencode([("channel", f"c{n}") for n in range(count)])


def _refusal(port: int, path: str) -> SseClient:
    client = SseClient.connect(port, path)
    client.read_to_end(timeout=10)
    client.close()
    return client


@pytest.mark.integration
def test_as_view_with_redis_channel_streams_what_send_event_publishes(server, publish):
    """``RedisQueueView.as_view(redis_channel="foo")`` streams events sent to "foo" only."""
    client = open_live(server.port, "/stream1/")
    try:
        publish("elsewhere", "not for foo", channel="bar")
        event_id = publish("greeting", "hello\nworld", channel="foo")
        publish("greeting", {"n": 2}, channel="foo")
        events = client.read_events(2, timeout=10)
    finally:
        client.close()

    assert client.headers["Content-Type"].startswith("text/event-stream")
    assert [(e.type, e.data) for e in events] == [
        ("greeting", "hello\nworld"),
        ("greeting", '{"n":2}'),
    ]
    assert events[0].last_event_id == event_id


@pytest.mark.integration
def test_get_redis_channel_takes_the_channel_from_the_url(server, publish):
    """A view whose get_redis_channel() reads self.kwargs streams the URL's channel."""
    alpha = open_live(server.port, "/events/alpha/")
    beta = open_live(server.port, "/events/beta/")
    try:
        publish("news", "for alpha", channel="alpha")
        publish("news", "for beta", channel="beta")
        publish("news", "alpha again", channel="alpha")
        got_alpha = data_of(alpha, 2)
        got_beta = data_of(beta, 1)
        publish("end", "", channel="beta")
        [end] = beta.read_events(1)
    finally:
        alpha.close()
        beta.close()

    assert got_alpha == ["for alpha", "alpha again"]
    assert (got_beta, end.type) == (["for beta"], "end")


@pytest.mark.integration
def test_several_channels_arrive_on_one_stream_each_in_publish_order(server, publish):
    """Events published concurrently to three channels all arrive, each channel in order."""
    count = 40
    client = open_live(server.port, "/multi/?channel=a&channel=b&channel=c")
    errors = []

    def publish_all(channel: str) -> None:
        try:
            for n in range(count):
                publish("tick", f"{channel}:{n}", channel=channel)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish_all, args=(c,)) for c in "abc"]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        received = data_of(client, 3 * count, timeout=20)
    finally:
        client.close()

    assert errors == []
    for channel in "abc":
        assert [d for d in received if d.startswith(channel + ":")] == [
            f"{channel}:{n}" for n in range(count)
        ]


@pytest.mark.integration
def test_a_channel_named_twice_streams_each_event_once(server, publish):
    """/multi/?channel=x&channel=x subscribes x once: every event arrives once."""
    client = open_live(server.port, "/multi/?channel=x&channel=x")
    try:
        for n in range(3):
            publish("tick", str(n), channel="x")
        publish("last", "", channel="x")
        events = client.read_until(lambda e: e.type == "last")
    finally:
        client.close()

    assert [e.data for e in events] == ["0", "1", "2", ""]


@pytest.mark.integration
def test_a_refused_channel_gets_403_before_the_stream_starts(server, publish):
    """can_read_channel refusing one of the channels answers 403 and opens no stream."""
    refused = _refusal(server.port, "/guarded/?channel=news&channel=secret-plans")
    allowed = open_live(server.port, "/guarded/?channel=news")
    try:
        publish("headline", "read me", channel="news")
        [event] = allowed.read_events(1)
    finally:
        allowed.close()

    assert refused.status == 403
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert b"secret-plans" in refused.body
    assert b"data:" not in refused.body and b"retry:" not in refused.body
    assert (event.type, event.data) == ("headline", "read me")
    eventually(lambda: get_stats(server.port)["streams"] == 0)


BAD_CHANNEL_PATHS = [
    ("/events/a%20b/", b"whitespace"),
    ("/events/a%09b/", b"whitespace"),
    ("/events/a%01b/", b"control"),
    ("/events/a%7Fb/", b"control"),
    ("/events/a%E2%80%A8b/", b"whitespace"),
    ("/events/" + "x" * 201 + "/", b"SSE_MAX_CHANNEL_LENGTH"),
    ("/multi/?channel=", b"empty"),
    ("/multi/?channel=ok&channel=a%0Ab", b"whitespace"),
    ("/multi/?channel=" + "y" * 201, b"SSE_MAX_CHANNEL_LENGTH"),
    ("/multi/?channel=a%00b", b"control"),
    ("/multi/", b"no channel"),
]


@pytest.mark.integration
@pytest.mark.parametrize(("path", "reason"), BAD_CHANNEL_PATHS)
def test_an_invalid_channel_name_from_the_url_gets_400_with_a_short_reason(server, path, reason):
    """Empty, 201-character, whitespace or control-character channel names get a 400."""
    client = _refusal(server.port, path)

    assert client.status == 400
    assert client.headers["Content-Type"].startswith("text/plain")
    assert reason in client.body
    assert len(client.body) < 200


@pytest.mark.integration
def test_a_200_character_channel_name_is_accepted(server, publish):
    """The longest allowed channel name (200 characters) streams."""
    channel = "z" * 200
    client = open_live(server.port, f"/events/{channel}/")
    try:
        publish("long", "ok", channel=channel)
        assert data_of(client, 1) == ["ok"]
    finally:
        client.close()


@pytest.mark.integration
def test_more_channels_than_sse_max_channels_get_400(server):
    """21 channels exceed SSE_MAX_CHANNELS (20): 400 naming the setting; 20 stream."""
    too_many = _refusal(server.port, _multi(21))
    at_limit = open_live(server.port, _multi(20))
    at_limit.close()

    assert too_many.status == 400
    assert b"SSE_MAX_CHANNELS" in too_many.body and b"21" in too_many.body
    assert at_limit.status == 200


@pytest.mark.integration
def test_an_event_published_as_soon_as_redis_has_the_subscription_arrives(
    server, publish, redis_server
):
    """Published the moment PUBSUB NUMSUB shows the stream's subscription, an event arrives.

    Repeated on 30 fresh channels: it catches a stream that takes its start
    position from a tip read after the event was published.
    """
    lost = []
    with redis_server.client() as admin:
        for n in range(30):
            channel = f"fresh{n}"
            client = SseClient.connect(server.port, f"/events/{channel}/")
            try:
                deadline = time.monotonic() + 10
                while admin.pubsub_numsub(f"sse:{channel}")[0][1] < 1:
                    assert time.monotonic() < deadline, f"{channel} was never subscribed"
                publish("first", str(n), channel=channel)
                try:
                    client.read_events(1, timeout=3)
                except TimeoutError:
                    lost.append(channel)
            finally:
                client.close()

    assert lost == []


def started_view(view: RedisQueueView) -> Mailbox:
    """Set ``view`` up for a plain GET, admit it and start its stream; return its mailbox."""
    view.setup(RequestFactory().get("/"))
    assert view.check_request() is None
    mailbox = Mailbox(10)
    view.start(mailbox)
    return mailbox


def test_a_new_stream_is_never_told_an_id_before_the_event_that_has_it(settings):
    """On a ready channel, an event on its way as the stream starts comes before any id-only message.

    An id-only message sets the browser's last id: sent first, and the
    connection lost before the event, the client would resume after an event
    it never got.
    """
    settings.SSE_BROKER = "memory"
    start_id = send_event("news", "before", channel="ready-channel")  # the channel has history
    keeper = RedisQueueView(redis_channel="ready-channel")  # and is ready in the hub
    started_view(keeper)
    view = RedisQueueView(redis_channel="ready-channel")
    mailbox = started_view(view)
    try:
        event_id = send_event("news", "on its way", channel="ready-channel")
        chunk = b"".join(view.render(mailbox.take(), mailbox))
    finally:
        view.stop()
        keeper.stop()

    messages = [block for block in chunk.split(b"\n\n") if block]
    assert messages == [  # the stream's start (before the event), then the event
        f"id: {start_id}".encode(),
        f"id: {event_id}\nevent: news\ndata: on its way".encode(),
    ]


def test_no_event_queued_after_a_revocation_reaches_the_client(settings):
    """A recheck that refuses ends the stream there: the events queued behind it in the same batch are not written."""
    settings.SSE_BROKER = "memory"
    allowed = {"yes": True}

    class Revocable(RedisQueueView):
        def can_read_channel(self, request, channel):
            return allowed["yes"]

    view = Revocable(redis_channel="revocable")
    mailbox = started_view(view)
    try:
        view.render(mailbox.take(), mailbox)  # subscribed, caught up
        before = send_event("news", "still allowed", channel="revocable")
        allowed["yes"] = False
        mailbox.put_control(Recheck("revocable"))
        send_event("news", "after the revocation", channel="revocable")
        chunk = b"".join(view.render(mailbox.take(), mailbox))
    finally:
        view.stop()

    assert [(e.data, e.last_event_id) for e in parse(chunk).events] == [("still allowed", before)]
    assert mailbox.ending


def test_an_event_published_as_a_stream_starts_is_delivered(settings):
    """An event published after a stream attached, before its first render, is not dropped.

    With the in-process broker: the stream has subscribed (the channel is ready),
    so the event reaches its mailbox and must be sent, not taken as history
    older than the stream.
    """
    settings.SSE_BROKER = "memory"
    view = RedisQueueView(redis_channel="starting")
    mailbox = started_view(view)
    try:
        event_id = send_event("news", "just after the start", channel="starting")
        chunk = b"".join(view.render(mailbox.take(), mailbox))
    finally:
        view.stop()

    assert [(e.type, e.data, e.last_event_id) for e in parse(chunk).events] == [
        ("news", "just after the start", event_id)
    ]


def test_live_events_taken_with_the_first_catch_up_marker_are_held_before_it():
    """[SYNC, e1, e2, SYNC] is read as [e1, e2, SYNC, SYNC]: a new client's start cannot pass them.

    Seen under load: the stream's own SYNC, the live event, the hub's SYNC in one
    take; the catch-up started at the hub's tip, which covered the event, and the
    event was then dropped as already sent while the client was told its id.
    """
    from django_sse.brokers.base import Message
    from django_sse.core.mailbox import NEXT_BATCH, SYNC, UNSYNCED
    from django_sse.redisqueue import _live_before_catch_up

    first, second = Message("c", "e", "1", (1, 0)), Message("c", "e", "2", (2, 0))

    assert _live_before_catch_up([SYNC, first, second, SYNC]) == [first, second, SYNC, SYNC]
    assert _live_before_catch_up([first, NEXT_BATCH, second]) == [first, second, NEXT_BATCH]
    # A control item first (the subscription lost): the order stays as it came.
    assert _live_before_catch_up([UNSYNCED, SYNC, first]) == [UNSYNCED, SYNC, first]
    assert _live_before_catch_up([SYNC, UNSYNCED, first]) == [SYNC, UNSYNCED, first]
