"""Resume across Redis faults: restarts with and without persistence, and failed history reads.

Each test runs its own redis-server (which it stops and starts) and a
gunicorn -k gevent worker on it. Without persistence a restart loses history:
clients whose position is gone must get ``stream-reset``, never a silent gap.
With AOF (appendfsync always) nothing acknowledged is lost, so clients resume
with no loss and no duplicate.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.parse
import urllib.request

import pytest

from django_sse import send_event
from django_sse.exceptions import PublishError
from tests.support import polling
from tests.support.redis_helpers import connect, multi_path, wait_position
from tests.support.sse import SseClient

pytestmark = pytest.mark.integration

RESET = "stream-reset"


# --- helpers ---------------------------------------------------------------------------


def publish_when_up(channel: str, data: str, timeout: float = 15) -> str:
    """Publish once Redis accepts it (the publisher's own reconnection is not under test)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return send_event("tick", data, channel)
        except PublishError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


eventually = functools.partial(polling.eventually, timeout=15, interval=0.05)


def summary(events) -> list[tuple[str, str]]:
    return [(event.type, event.data) for event in events]


@pytest.fixture
def stack(servers, settings):
    """Start a redis-server (``appendonly`` as given) and a gunicorn worker on it; return both."""

    def start(appendonly: bool = False, heartbeat: str = "0.5"):
        redis = servers.redis(appendonly=appendonly)
        settings.SSE_REDIS_URL = redis.url
        settings.SSE_PUBLISH_TIMEOUT = 2
        gunicorn = servers.site(redis.url, heartbeat=heartbeat)
        return redis, gunicorn

    return start


# --- restart without persistence -----------------------------------------------------------


@pytest.mark.parametrize("shape", ["single", "multi"])
def test_a_connected_stream_gets_stream_reset_when_redis_restarts_without_history(stack, shape):
    """Redis restarted empty: once the hub resubscribes, the open stream says stream-reset, then goes on live."""
    redis, gunicorn = stack()
    channels = ["news"] if shape == "single" else ["news", "quiet"]
    path = "/events/news/" if shape == "single" else multi_path(*channels)
    client = connect(gunicorn.port, path)
    wait_position(client)
    for index in range(3):
        send_event("tick", f"before{index}", "news")
    client.read_events(3)

    redis.restart()  # no AOF, no RDB: every channel's history is gone
    before_reset = client.read_until(lambda event: event.type == RESET, timeout=20)
    after_restart = publish_when_up("news", "after")
    events = client.read_events(1)
    if shape == "multi":
        publish_when_up("quiet", "quiet-after")
        events += client.read_events(1)
    position = client.parser.last_event_id
    client.close()

    # Only "news" had a position to lose; "quiet" was at 0-0 and lost nothing.
    assert summary(before_reset) == [
        (RESET, json.dumps({"channels": ["news"]}, separators=(",", ":")))
    ]
    assert summary(events) == [("tick", "after")] + (
        [("tick", "quiet-after")] if shape == "multi" else []
    )
    if shape == "single":
        assert position == after_restart
    with connect(gunicorn.port, path, position) as again:  # the new position resumes cleanly
        publish_when_up("news", "next")
        assert summary(again.read_events(1)) == [("tick", "next")]


@pytest.mark.parametrize("published_after_restart", [False, True])
def test_a_client_resuming_with_an_id_from_before_an_empty_restart_gets_stream_reset(
    stack, published_after_restart
):
    """An id issued before Redis restarted without persistence is a lost position: stream-reset, then live."""
    redis, gunicorn = stack()
    first = connect(gunicorn.port, "/events/news/")
    wait_position(first)
    send_event("tick", "before", "news")
    first.read_events(1)
    old_id = first.parser.last_event_id
    first.close()

    redis.restart()
    if published_after_restart:  # history exists again, but without the client's position
        publish_when_up("news", "meanwhile")
    with connect(gunicorn.port, "/events/news/", old_id) as client:
        [reset] = client.read_events(1, timeout=20)
        wait_position(client)
        publish_when_up("news", "live")
        [live] = client.read_events(1)

    assert (reset.type, json.loads(reset.data)) == (RESET, {"channels": ["news"]})
    assert (live.type, live.data) == ("tick", "live")


def test_a_client_resuming_after_a_memory_broker_server_restart_gets_stream_reset(servers):
    """The memory broker's history dies with its process: an id from before a restart is reset."""
    server = servers.gunicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": "", "DJANGO_SSE_TEST_HEARTBEAT": "0.5"}
    )

    def publish(data: str) -> None:
        body = urllib.parse.urlencode({"event": "tick", "data": data, "channel": "news"}).encode()
        urllib.request.urlopen(f"{server.url}/publish/", body, timeout=10).close()

    with connect(server.port, "/events/news/") as first:
        wait_position(first)
        publish("before")
        first.read_events(1)
    server.restart()
    publish("meanwhile")  # the new process has history again, without the old position

    with connect(server.port, "/events/news/", first.parser.last_event_id) as client:
        [reset] = client.read_events(1)
        wait_position(client)
        publish("live")
        [live] = client.read_events(1)

    assert (reset.type, json.loads(reset.data)) == (RESET, {"channels": ["news"]})
    assert (live.type, live.data) == ("tick", "live")


# --- restart with persistence --------------------------------------------------------------


class Publisher(threading.Thread):
    """Publishes numbered events on two channels in turn until stopped; records what succeeded."""

    def __init__(self, channels: list[str]) -> None:
        super().__init__(daemon=True)
        self.channels = channels
        self.attempted = {name: [] for name in channels}
        self.succeeded = {name: [] for name in channels}
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            for name in self.channels:
                self.attempted[name].append(number)
                try:
                    send_event("tick", f"{name}:{number}", name)
                except PublishError:
                    self.failures += 1
                    time.sleep(0.05)
                else:
                    self.succeeded[name].append(number)
            number += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


class Reader(threading.Thread):
    """Reads a stream until an ``end`` event has arrived on every channel."""

    def __init__(self, client: SseClient, channels: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.channels = channels
        self.error: str | None = None

    def run(self) -> None:
        ends = set()

        def done(event) -> bool:
            if event.data.endswith(":end"):
                ends.add(event.data)
            return len(ends) == len(self.channels)

        try:
            self.client.read_until(done, timeout=60)
        except Exception as exc:
            self.error = repr(exc)

    def numbers(self) -> dict[str, list[int]]:
        found = {name: [] for name in self.channels}
        for event in self.client.events:
            name, _, number = event.data.partition(":")
            if event.type == "tick" and name in found and number != "end":
                found[name].append(int(number))
        return found


def _check_delivery(reader: Reader, publisher: Publisher, after: dict[str, int]) -> None:
    """Each channel: strictly increasing, every success after ``after`` present, nothing never attempted."""
    assert reader.error is None, reader.error
    assert [e for e in reader.client.events if e.type != "tick"] == []
    for name, numbers in reader.numbers().items():
        assert numbers == sorted(set(numbers)), f"{name}: duplicated or out of order"
        wanted = [n for n in publisher.succeeded[name] if n > after[name]]
        missing = sorted(set(wanted) - set(numbers))
        assert missing == [], f"{name}: {len(missing)} acknowledged events lost, e.g. {missing[:5]}"
        assert set(numbers) <= set(publisher.attempted[name])


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_with_aof_events_published_around_a_restart_all_arrive_once(stack, how):
    """Redis with AOF stopped (or killed) and restarted mid-stream: connected and resuming clients lose nothing."""
    redis, gunicorn = stack(appendonly=True)
    channels = ["left", "right"]
    path = multi_path(*channels)
    staying = connect(gunicorn.port, path)
    wait_position(staying)
    leaving = connect(gunicorn.port, path)
    wait_position(leaving)
    stay_reader = Reader(staying, channels)
    stay_reader.start()
    publisher = Publisher(channels)
    publisher.start()

    eventually(lambda: len(publisher.succeeded["right"]) >= 20)
    leaving.read_events(10)
    leaving.close()
    seen_before = {name: -1 for name in channels}
    for event in leaving.events:
        name, _, number = event.data.partition(":")
        seen_before[name] = max(seen_before[name], int(number))
    resume_from = leaving.parser.last_event_id

    failed = publisher.failures
    if how == "stop":
        redis.stop()
    else:
        redis.kill()
    eventually(lambda: publisher.failures >= failed + 3)  # publishing fails meanwhile
    redis.start()
    count = len(publisher.succeeded["right"])
    eventually(lambda: len(publisher.succeeded["right"]) >= count + 30)
    publisher.stop()
    for name in channels:
        publish_when_up(name, f"{name}:end")

    resumed = connect(gunicorn.port, path, resume_from)
    resume_reader = Reader(resumed, channels)
    resume_reader.start()
    stay_reader.join(60)
    resume_reader.join(60)
    staying.close()
    resumed.close()

    assert publisher.failures > 0  # Redis really was away while publishing went on
    _check_delivery(stay_reader, publisher, {name: -1 for name in channels})
    _check_delivery(resume_reader, publisher, seen_before)


# --- failed history reads --------------------------------------------------------------------


@pytest.fixture
def acl_stack(servers, settings):
    """A redis-server whose ``default`` user (the server's) the test restricts through ACLs.

    The test publishes as an ``admin`` user that keeps every permission.
    """
    redis = servers.redis()
    with redis.client() as client:
        client.execute_command("ACL", "SETUSER", "admin", "on", ">pw", "~*", "&*", "+@all")
    settings.SSE_REDIS_URL = f"redis://admin:pw@127.0.0.1:{redis.port}/0"
    settings.SSE_PUBLISH_TIMEOUT = 2
    gunicorn = servers.gunicorn(
        env={"DJANGO_SSE_TEST_REDIS_URL": redis.url, "DJANGO_SSE_TEST_HEARTBEAT": "0.3"}
    )
    admin = redis.client(username="admin", password="pw")
    yield admin, gunicorn
    admin.close()


def _hub_subscribed(admin) -> bool:
    return any(int(client["sub"]) > 0 for client in admin.client_list(_type="pubsub"))


def _denied(admin, reason: str, name: str) -> int:
    """Return how many times Redis refused the server (user ``default``) ``name``, per ACL LOG.

    ``reason`` is "command" (``name`` a command) or "key" (``name`` a key).
    """
    return sum(
        int(entry["count"])
        for entry in admin.acl_log()
        if (entry["username"], entry["reason"], entry["object"]) == ("default", reason, name)
    )


def test_a_resync_whose_history_read_fails_is_retried_and_loses_nothing(acl_stack):
    """The hub reconnects but reading history fails at first: the stream catches up later, no silent gap."""
    admin, gunicorn = acl_stack
    client = connect(gunicorn.port, "/events/news/")
    wait_position(client)
    send_event("tick", "e1", "news")
    client.read_events(1)

    # The hub loses its subscription and cannot get it back for now...
    admin.execute_command("ACL", "SETUSER", "default", "-subscribe")
    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    eventually(lambda: not _hub_subscribed(admin))
    send_event("tick", "e2", "news")  # ...so these reach history only
    send_event("tick", "e3", "news")
    # It resubscribes, but its history reads fail for a while (as under load or while loading).
    admin.execute_command("ACL", "LOG", "RESET")
    admin.execute_command("ACL", "SETUSER", "default", "-evalsha", "-eval", "+subscribe")
    eventually(lambda: _hub_subscribed(admin))
    # The stream has tried to catch up (read.lua) and failed, twice.
    eventually(lambda: _denied(admin, "command", "evalsha") >= 2)
    admin.execute_command("ACL", "SETUSER", "default", "+evalsha", "+eval")
    send_event("tick", "e4", "news")  # held until the retried catch-up, or read by it

    events = client.read_until(lambda event: event.data == "e4", timeout=10)
    client.close()

    assert summary(events) == [("tick", "e2"), ("tick", "e3"), ("tick", "e4")]


def test_a_reset_found_before_another_channels_read_fails_is_still_sent(acl_stack, settings):
    """One channel's position is trimmed, the next channel's read fails: stream-reset still comes first."""
    admin, gunicorn = acl_stack
    path = multi_path("trimmed", "other")
    first = connect(gunicorn.port, path)
    wait_position(first)
    send_event("tick", "t0", "trimmed")
    send_event("tick", "o0", "other")
    first.read_events(2)
    first.close()
    settings.SSE_HISTORY_MAXLEN = 10
    for index in range(300):
        send_event("tick", f"t{index + 1}", "trimmed")

    admin.execute_command("ACL", "LOG", "RESET")
    admin.execute_command("ACL", "SETUSER", "default", "resetkeys", "~sse:trimmed")  # "other" fails
    resumed = connect(gunicorn.port, path, first.parser.last_event_id)
    # The catch-up has read "trimmed" (a reset) and failed on "other", twice.
    eventually(lambda: _denied(admin, "key", "sse:other") >= 2)
    admin.execute_command("ACL", "SETUSER", "default", "allkeys")
    [event] = resumed.read_events(1, timeout=15)
    resumed.close()

    assert (event.type, json.loads(event.data)) == (RESET, {"channels": ["trimmed"]})
