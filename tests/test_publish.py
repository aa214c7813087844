"""``send_event``, the ``send_event`` management command and the wire format, on a real Redis.

What reaches Redis is watched by a subscriber of our own (``PSUBSCRIBE
sse:*``) and by reading the channel's stream key, so "nothing was
published" is an observation, not an assumption.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

import django_sse
import django_sse.publish
import django_sse.redisqueue
from django_sse.exceptions import (
    EventTooLarge,
    PublishError,
    PublishOutcome,
    PublishOutcomeUnknown,
    PublishRefused,
)
from tests.support.redis_helpers import open_live, other_redis_clients
from tests.support.servers import REPO_TOP, free_port
from tests.test_sse import deeply_nested

PUBLISH_TIMEOUT = 0.5
# Beyond SSE_PUBLISH_TIMEOUT: connecting and one command may each take it, on a loaded machine.
SLACK = 3.0


class Watcher:
    """A Redis subscriber to every ``sse:*`` channel, to see exactly what was published."""

    def __init__(self, client) -> None:
        self.client = client
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("sse:*")
        confirmation = self.pubsub.get_message(timeout=5)  # the psubscribe reply
        assert confirmation is None or confirmation["type"] == "psubscribe"
        while self.pubsub.get_message(timeout=0.05) is not None:
            pass

    def next(self, timeout: float = 5) -> tuple[str, bytes] | None:
        """Return the next (channel, payload) published, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
            if message is not None and message["type"] == "pmessage":
                return message["channel"].decode(), message["data"]
        return None

    def stream_keys(self) -> list[bytes]:
        """Return the channels' stream keys (not the presence keys a server's hub writes)."""
        keys = self.client.keys("sse:*")
        return sorted(key for key in keys if self.client.type(key) == b"stream")

    def close(self) -> None:
        self.pubsub.close()


@pytest.fixture
def publishing(settings, redis_url):
    """This process publishes to the session's redis-server, with a short publish timeout."""
    settings.SSE_REDIS_URL = redis_url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    return redis_url


@pytest.fixture
def watcher(redis_server, publishing):
    with redis_server.client() as client:
        watching = Watcher(client)
        yield watching
        watching.close()


@pytest.fixture(scope="module")
def server(module_servers, redis_server):
    """One gunicorn gevent worker of the test project, on the session's redis-server."""
    return module_servers.site(redis_server.url)


# --- the Python API ------------------------------------------------------------


@pytest.mark.integration
def test_send_event_is_importable_from_django_sse_and_from_the_old_path(watcher):
    """django_sse.send_event and django_sse.redisqueue.send_event both publish to Redis."""
    from django_sse import send_event as new_path
    from django_sse.redisqueue import send_event as old_path

    new_id = new_path("new", "from django_sse", channel="paths")
    old_id = old_path("old", "from redisqueue", channel="paths")

    assert old_path is django_sse.publish.send_event
    assert watcher.next() == ("sse:paths", f"1\n{new_id}\nnew\nfrom django_sse".encode())
    assert watcher.next() == ("sse:paths", f"1\n{old_id}\nold\nfrom redisqueue".encode())
    assert watcher.client.xlen("sse:paths") == 2


DATA_CASES = [
    ("plain text", "plain text"),
    ("", ""),
    ("two\nlines ü", "two\nlines ü"),
    ('{"already": "json"}', '{"already": "json"}'),
]
JSON_CASES = [
    ({"a": 1, "b": [True, None]}, {"a": 1, "b": [True, None]}),
    ([1, "two"], [1, "two"]),
    (7, 7),
    (datetime.date(2024, 2, 29), "2024-02-29"),
    (
        datetime.datetime(2024, 2, 29, 13, 5, 7, tzinfo=datetime.timezone.utc),
        "2024-02-29T13:05:07Z",
    ),
    (decimal.Decimal("1.10"), "1.10"),
    (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
    ({"when": datetime.date(2024, 1, 2), "amount": decimal.Decimal("3.50")},
     {"when": "2024-01-02", "amount": "3.50"}),
]  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("data", "expected"), DATA_CASES)
def test_str_data_is_published_as_is(watcher, data, expected):
    """A str is the event's data exactly, on pub/sub and in the stream key."""
    event_id = django_sse.send_event("text", data, channel="data")

    assert watcher.next() == ("sse:data", f"1\n{event_id}\ntext\n{expected}".encode())
    [(entry_id, fields)] = watcher.client.xrange("sse:data")
    assert (entry_id.decode(), fields) == (
        event_id,
        {b"event": b"text", b"data": expected.encode()},
    )


@pytest.mark.integration
@pytest.mark.parametrize(("data", "expected"), JSON_CASES)
def test_other_data_is_published_as_django_json(watcher, data, expected):
    """dicts, lists, numbers, dates, Decimals and UUIDs are JSON-encoded with DjangoJSONEncoder."""
    event_id = django_sse.send_event("json", data, channel="data")

    channel, payload = watcher.next()
    version, published_id, event, text = payload.decode().split("\n", 3)
    assert (channel, version, published_id, event) == ("sse:data", "1", event_id, "json")
    assert json.loads(text) == expected


BAD_CALLS = [
    # (event name, data, channel, exception)
    ("e", object(), "c", TypeError),
    ("e", {"nested": object()}, "c", TypeError),
    ("e", {1, 2}, "c", TypeError),
    ("e", deeply_nested(dict), "c", TypeError),  # not RecursionError
    ("e", float("nan"), "c", (TypeError, ValueError)),
    ("e", "lone \ud800 surrogate", "c", (TypeError, ValueError)),
    ("", "d", "c", ValueError),
    ("a\nb", "d", "c", ValueError),
    ("a\rb", "d", "c", ValueError),
    (None, "d", "c", ValueError),
    ("e", "d", "", ValueError),
    ("e", "d", "a b", ValueError),
    ("e", "d", "a\nb", ValueError),
    ("e", "d", "a\x00b", ValueError),
    ("e", "d", "x" * 201, ValueError),
]


@pytest.mark.integration
@pytest.mark.parametrize(("event", "data", "channel", "error"), BAD_CALLS)
def test_a_bad_event_raises_before_anything_is_published(watcher, event, data, channel, error):
    """Unencodable data, a bad event name or channel raise and publish nothing at all."""
    with pytest.raises(error):
        django_sse.send_event(event, data, channel=channel)
    django_sse.send_event("sentinel", "after", channel="check")

    # The first thing our subscriber sees is the sentinel published after the failure.
    channel_seen, payload = watcher.next()
    assert (channel_seen, payload.split(b"\n", 2)[2]) == ("sse:check", b"sentinel\nafter")
    assert watcher.stream_keys() == [b"sse:check"]


@pytest.mark.integration
def test_data_over_sse_max_event_size_raises_event_too_large_before_publishing(settings, watcher):
    """Data over SSE_MAX_EVENT_SIZE bytes raises EventTooLarge; at the limit it publishes."""
    settings.SSE_MAX_EVENT_SIZE = 1000

    for data in ["x" * 1001, "é" * 501, {"k": "x" * 995}]:  # 1001, 1002 and 1003 bytes
        with pytest.raises(EventTooLarge, match="SSE_MAX_EVENT_SIZE"):
            django_sse.send_event("big", data, channel="sized")
    event_id = django_sse.send_event("big", "x" * 1000, channel="sized")

    assert watcher.next() == ("sse:sized", f"1\n{event_id}\nbig\n{'x' * 1000}".encode())
    assert watcher.client.xlen("sse:sized") == 1
    assert issubclass(EventTooLarge, ValueError)


@pytest.mark.integration
def test_the_old_settings_names_configure_redis_and_the_default_channel(settings, redis_server):
    """REDIS_SSEQUEUE_CONNECTION_SETTINGS and REDIS_SSEQUEUE_CHANEL_NAME still work."""
    with redis_server.client() as client:
        client.flushall()
        settings.REDIS_SSEQUEUE_CONNECTION_SETTINGS = {
            "location": f"127.0.0.1:{redis_server.port}",
            "db": 0,
            "password": None,
        }
        settings.REDIS_SSEQUEUE_CHANEL_NAME = "legacy"

        event_id = django_sse.send_event("old", "settings")

        assert [entry[0].decode() for entry in client.xrange("sse:legacy")] == [event_id]


# --- Redis unreachable -----------------------------------------------------------


def _timed_publish_error(channel: str = "down") -> tuple[float, PublishError]:
    started = time.monotonic()
    with pytest.raises(PublishError) as raised:
        django_sse.send_event("e", "d", channel=channel)
    return time.monotonic() - started, raised.value


@pytest.mark.integration
def test_send_event_to_a_port_nobody_listens_on_raises_publish_error(settings):
    """With nothing listening at SSE_REDIS_URL, send_event raises PublishError naming it."""
    port = free_port()
    settings.SSE_REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT

    elapsed, error = _timed_publish_error()

    assert elapsed < PUBLISH_TIMEOUT + SLACK
    assert f"127.0.0.1:{port}" in str(error)


@pytest.mark.integration
def test_a_refused_connection_is_publish_refused_from_send_event_and_asend_event(settings):
    """Connection refused: nothing was sent, so both raise PublishRefused (safe to retry), saying so."""
    settings.SSE_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT

    with pytest.raises(PublishRefused, match="nothing was published") as refused:
        django_sse.send_event("e", "d", channel="down")
    with pytest.raises(PublishRefused) as refused_async:
        asyncio.run(django_sse.asend_event("e", "d", channel="down"))

    assert refused.value.outcome is refused_async.value.outcome is PublishOutcome.NOT_PUBLISHED
    assert isinstance(refused.value, PublishError)  # ``except PublishError`` still catches it


@pytest.mark.integration
def test_send_event_to_a_server_that_never_answers_raises_within_the_timeout(settings):
    """A server that accepts but never replies makes send_event raise, not hang."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts: the backlog does
        settings.SSE_REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT

        elapsed, error = _timed_publish_error()

    assert elapsed < PUBLISH_TIMEOUT + SLACK
    assert "SSE_PUBLISH_TIMEOUT" in str(error)


@pytest.mark.integration
def test_send_event_to_a_stopped_redis_raises_then_works_once_it_is_back(settings, servers):
    """A stopped redis-server makes send_event raise PublishError; after a restart it publishes."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    django_sse.send_event("e", "before", channel="down")  # the pool now holds a connection

    redis.stop()
    elapsed, error = _timed_publish_error()
    elapsed_again, _ = _timed_publish_error()
    redis.start()
    assert isinstance(error, PublishRefused)  # the pooled connection's reconnect was refused
    event_id = django_sse.send_event("e", "after", channel="down")

    assert elapsed < PUBLISH_TIMEOUT + SLACK and elapsed_again < PUBLISH_TIMEOUT + SLACK
    with redis.client() as client:
        assert [entry[0].decode() for entry in client.xrange("sse:down")] == [event_id]


@pytest.mark.integration
def test_send_event_to_a_hung_redis_raises_within_the_timeout(settings, servers):
    """A redis-server stopped with SIGSTOP (a pooled connection open) makes send_event raise."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    django_sse.send_event("e", "before", channel="hung")

    redis.send_signal(signal.SIGSTOP)
    try:
        elapsed, _ = _timed_publish_error(channel="hung")
    finally:
        redis.send_signal(signal.SIGCONT)

    assert elapsed < PUBLISH_TIMEOUT + SLACK


@pytest.mark.integration
def test_a_publish_to_a_hung_redis_has_an_unknown_outcome_and_is_delivered_later(settings, servers):
    """SIGSTOP past SSE_PUBLISH_TIMEOUT: PublishOutcomeUnknown, and after SIGCONT Redis records and announces it."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    with redis.client() as client:
        watcher = Watcher(client)
        before = django_sse.send_event("e", "before", channel="hung")  # the pool holds a connection
        assert watcher.next() == ("sse:hung", f"1\n{before}\ne\nbefore".encode())

        redis.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(PublishOutcomeUnknown, match="may have been published") as unknown:
                django_sse.send_event("e", "during", channel="hung")
        finally:
            redis.send_signal(signal.SIGCONT)
        announced = watcher.next(timeout=10)
        recorded = [fields[b"data"] for _, fields in client.xrange("sse:hung")]
        watcher.close()

    assert unknown.value.outcome is PublishOutcome.UNKNOWN
    assert announced is not None and announced[1].endswith(b"\ne\nduring")
    assert recorded == [b"before", b"during"]  # a retry would have made it twice


@pytest.mark.integration
def test_an_error_reply_before_the_event_is_recorded_is_publish_refused(settings, servers):
    """Redis out of memory refuses the script's XADD: PublishRefused, and nothing is recorded."""
    redis = servers.redis()
    settings.SSE_REDIS_URL = redis.url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    django_sse.send_event("e", "before", channel="full")
    with redis.client() as client:
        client.config_set("maxmemory", "1")
        try:
            with pytest.raises(PublishRefused, match="OOM|maxmemory"):
                django_sse.send_event("e", "refused", channel="full")
        finally:
            client.config_set("maxmemory", "0")
        recorded = [fields[b"data"] for _, fields in client.xrange("sse:full")]

    assert recorded == [b"before"]


@pytest.mark.integration
def test_publishing_many_times_uses_one_pooled_connection(settings, servers):
    """200 publishes, 100 of them from 10 threads at once, open one Redis connection in all."""
    redis = servers.redis()  # its own: no other test's connections in CLIENT LIST
    settings.SSE_REDIS_URL = redis.url
    errors = []

    def publish_some(worker: int) -> None:
        try:
            for n in range(10):
                django_sse.send_event("n", f"{worker}:{n}", channel="pooled")
        except Exception as exc:  # reported below
            errors.append(exc)

    for n in range(100):
        django_sse.send_event("n", str(n), channel="pooled")
    threads = [threading.Thread(target=publish_some, args=(w,)) for w in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    with redis.client() as admin:
        others = other_redis_clients(admin)
        published = admin.xlen("sse:pooled")
    assert errors == []
    assert published == 200
    assert len(others) == 1, others  # the one pooled connection, shared by the 10 threads


# --- the wire format, from a foreign publisher ---------------------------------


@pytest.mark.integration
def test_a_foreign_publisher_using_the_documented_format_reaches_a_stream(server, redis_server):
    """redis-cli PUBLISH sse:<channel> "1\\n\\n<event>\\n<data>" (or with an id) arrive."""
    with redis_server.client() as client:
        client.flushall()
        stream = open_live(server.port, "/events/foreign/")
        try:
            subprocess.run(
                ["redis-cli", "-p", str(redis_server.port), "PUBLISH", "sse:foreign",
                 "1\n\nnotice\nhello from redis-cli\nsecond line"],
                check=True, capture_output=True, timeout=10,
            )  # fmt: skip
            client.publish("sse:foreign", b"2\nsome future format")  # ignored
            entry_id = client.xadd("sse:foreign", {"event": "kept", "data": "with an id"}).decode()
            client.publish("sse:foreign", f"1\n{entry_id}\nkept\nwith an id")
            events = stream.read_events(2, timeout=10)
        finally:
            stream.close()

    assert [(e.type, e.data) for e in events] == [
        ("notice", "hello from redis-cli\nsecond line"),
        ("kept", "with an id"),
    ]
    assert events[1].last_event_id == entry_id
    assert b"id: " + entry_id.encode() in stream.body


# --- manage.py send_event --------------------------------------------------------


def _command(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_SSE_TEST")}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", PYTHONPATH=str(REPO_TOP))
    if redis_url is not None:
        env["DJANGO_SSE_TEST_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "django", "send_event", *args],
        cwd=REPO_TOP, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.integration
def test_the_send_event_command_reaches_a_stream_in_the_server(server, redis_url, redis_server):
    """`python -m django send_event CHANNEL EVENT DATA` (--json, --no-history) reach a stream."""
    stream = open_live(server.port, "/events/cmd/")
    try:
        plain = _command("cmd", "greeting", "hello world", redis_url=redis_url)
        as_json = _command("cmd", "payload", '{"a": [1, 2.5, null]}', "--json", redis_url=redis_url)
        unrecorded = _command("cmd", "quiet", "not kept", "--no-history", redis_url=redis_url)
        a_string = _command("cmd", "text", '"a string"', "--json", redis_url=redis_url)
        events = stream.read_events(4, timeout=10)
    finally:
        stream.close()

    results = (plain, as_json, unrecorded, a_string)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert [(e.type, e.data) for e in events[:1]] == [("greeting", "hello world")]
    assert events[0].last_event_id == plain.stdout.strip()
    assert events[1].type == "payload"
    assert json.loads(events[1].data) == {"a": [1, 2.5, None]}
    assert (events[2].type, events[2].data) == ("quiet", "not kept")
    assert (events[3].type, json.loads(events[3].data)) == ("text", "a string")  # encoded
    with redis_server.client() as client:
        assert client.xlen("sse:cmd") == 3  # the --no-history event is not in the history


@pytest.mark.integration
def test_the_send_event_command_refuses_the_memory_broker():
    """Without Redis the command exits non-zero with a CommandError naming SSE_REDIS_URL."""
    result = _command("news", "e", "would reach nobody")

    assert result.returncode != 0
    assert "CommandError" in result.stderr
    assert "SSE_REDIS_URL" in result.stderr


@pytest.mark.integration
def test_the_send_event_command_rejects_bad_json_and_publishes_nothing(watcher, publishing):
    """--json with DATA that is not JSON is an error; nothing reaches Redis."""
    result = _command("cmd", "e", "{not json", "--json", redis_url=publishing)
    with pytest.raises(CommandError, match="JSON"):
        call_command("send_event", "cmd", "e", "[1,", json=True)

    assert result.returncode != 0
    assert "JSON" in result.stderr
    assert watcher.next(timeout=0.5) is None
    assert watcher.stream_keys() == []


@pytest.mark.integration
def test_the_send_event_command_reports_a_bad_channel(watcher):
    """A channel with whitespace is a CommandError saying why; nothing is published."""
    with pytest.raises(CommandError, match="whitespace"):
        call_command("send_event", "a b", "e", "data")

    assert watcher.next(timeout=0.5) is None
    assert watcher.stream_keys() == []


# --- publishing on commit ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_on_commit_publishes_after_the_commit_and_never_after_a_rollback(watcher):
    """send_event(on_commit=True) returns None, publishes when the transaction commits, not on rollback."""
    from django.db import transaction

    with pytest.raises(ZeroDivisionError), transaction.atomic():
        assert django_sse.send_event("tick", "rolled back", "oc", on_commit=True) is None
        1 / 0  # noqa: B018
    with transaction.atomic():
        django_sse.send_event("tick", "committed", "oc", on_commit=True)
        assert watcher.next(timeout=0.3) is None  # not before the commit
    published = watcher.next()
    outside = django_sse.send_event("tick", "outside", "oc", on_commit=True)

    assert published is not None and published[1].endswith(b"\ncommitted")
    assert outside is None
    assert watcher.next()[1].endswith(b"\noutside")  # no transaction: at once
    assert watcher.next(timeout=0.3) is None  # the rolled-back one never comes


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_asend_event_on_commit_publishes_at_once_outside_a_transaction(watcher):
    """asend_event(on_commit=True) registers off the loop, where no transaction is open: it publishes."""
    assert asyncio.run(django_sse.asend_event("tick", "async", "oc", on_commit=True)) is None
    assert watcher.next()[1].endswith(b"\nasync")
