"""A broker that was never reached, told as it is: in the log, to a stream, by send_event and check --deploy.

A process that has never reached Redis refuses streams with a 503 (and
``Retry-After``) before any byte, logs "Could not reach ... (never
connected)", never "Lost"; once it had a subscription, an outage leaves new
streams open (they catch up when Redis returns), as before.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.parse

import pytest
from django.core import checks as django_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

import django_sse
from django_sse.brokers.redis.broker import RedisBroker
from django_sse.checks import run_startup_checks
from django_sse.exceptions import PublishError, PublishRefused
from tests.support.redis_helpers import data_of, eventually, open_live
from tests.support.servers import RedisServer, free_port

PUBLISH_TIMEOUT = 0.5
NEVER = "(never connected"
LOST = "Lost the Redis subscription"


def _dead_url() -> str:
    """Return a Redis URL on a loopback port nothing listens on (connecting is refused at once)."""
    return f"redis://127.0.0.1:{free_port()}/0"


def _address(url: str) -> str:
    """Return the ``host:port`` of ``url``, as the library's messages name it."""
    return urllib.parse.urlsplit(url).netloc


def _get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """Return the status, headers and body of a stream's answer that is not a stream (or its first bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        body = response.read() if response.status != 200 else response.read1(200)
        return response.status, headers, body
    finally:
        connection.close()


class _Listener:
    """A ``BrokerListener`` that records nothing: the broker's own state is under test."""

    def on_connected(self) -> int:
        return 0

    def on_subscribed(self, channel: str) -> None: ...
    def on_message(self, message) -> None: ...
    def on_control(self, payload: str) -> None: ...
    def on_caught_up(self, token: str) -> None: ...
    def on_disconnected(self) -> None: ...
    def on_lost(self, channels: list[str]) -> None: ...


def _broker(url: str) -> RedisBroker:
    return RedisBroker(url, prefix="sse:", timeout=PUBLISH_TIMEOUT, maxlen=100, ttl=0)


# --- The broker's own account ---------------------------------------------------------


@pytest.mark.integration
def test_a_broker_on_a_dead_port_says_it_was_never_reached_and_logs_it_so(caplog):
    """never_reached() after the refused first attempt; the log says "could not reach", never "lost"."""
    url = _dead_url()
    broker = _broker(url)
    try:
        with caplog.at_level("INFO", logger="django_sse"):
            broker.start(_Listener())
            assert broker.never_reached()  # waits for the first attempt's outcome
            eventually(lambda: NEVER in caplog.text, what="the never-connected line")
    finally:
        broker.close()

    line = next(line for line in caplog.messages if NEVER in line)
    assert line.startswith(f"Could not reach Redis at {_address(url)} {NEVER}")
    assert LOST not in caplog.text


@pytest.mark.integration
def test_a_reached_broker_is_never_unreached_again_even_while_down(caplog, servers):
    """Reached once, then Redis stops: never_reached() stays False and the log says "lost"."""
    redis = servers.redis()
    broker = _broker(redis.url)
    try:
        with caplog.at_level("INFO", logger="django_sse"):
            broker.start(_Listener())
            assert not broker.never_reached()
            eventually(broker.is_connected, what="the subscriber connected")
            redis.stop()
            eventually(lambda: LOST in caplog.text, what="the lost-subscription line")
            assert not broker.never_reached()
    finally:
        broker.close()

    assert NEVER not in caplog.text


def test_the_memory_broker_is_always_reached():
    from django_sse.brokers.memory import MemoryBroker

    assert not MemoryBroker(maxlen=10, ttl=0).never_reached()


# --- Streams --------------------------------------------------------------------------


@pytest.mark.integration
def test_a_stream_of_a_never_reached_broker_is_a_503_with_retry_after(servers, server_kind):
    """Redis on a dead port: the first stream and the next are 503 + Retry-After, not a silent 200."""
    url = _dead_url()
    site = servers.site(url, kind=server_kind)

    first = _get(site.port, "/events/news/")
    second = _get(site.port, "/events/news/")

    for status, headers, body in (first, second):
        assert status == 503, (status, body)
        assert int(headers["retry-after"]) > 0
        assert headers["content-type"].startswith("text/plain")
        assert b"not reached its message broker" in body
    log = eventually(lambda: site.stderr_text(20000), until=lambda text: NEVER in text)
    assert f"Could not reach Redis at {_address(url)} {NEVER}" in log
    assert LOST not in log


@pytest.mark.integration
def test_once_redis_comes_up_streams_open_and_deliver(servers, settings, tmp_path):
    """The 503s end when Redis first answers: the log says it was reached, and streams are live."""
    redis = RedisServer(log_dir=tmp_path / "late-redis")
    servers.started.append(redis)  # stopped with the others
    site = servers.site(redis.url)
    assert _get(site.port, "/events/late/")[0] == 503

    redis.start()
    eventually(lambda: _get(site.port, "/events/late/")[0] == 200, what="a 200 once Redis is up")
    client = open_live(site.port, "/events/late/")
    try:
        settings.SSE_REDIS_URL = redis.url
        django_sse.send_event("news", "after the start", channel="late")
        assert data_of(client, 1, event="news") == ["after the start"]
    finally:
        client.close()

    log = site.stderr_text(20000)
    assert "Reached Redis at" in log
    assert LOST not in log and "subscription restored" not in log


@pytest.mark.integration
def test_an_outage_after_the_broker_was_reached_keeps_new_streams_open(
    servers, settings, server_kind
):
    """Reached once, then Redis stops: a new stream is a 200 (no 503) and catches up when it returns."""
    redis = servers.redis()
    site = servers.site(redis.url, kind=server_kind)
    open_live(site.port, "/events/outage/").close()  # the process has reached Redis

    redis.stop()
    eventually(lambda: LOST in site.stderr_text(20000), what="the lost-subscription line")
    status, headers, _ = _get(site.port, "/events/outage/")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")

    redis.start()
    client = open_live(site.port, "/events/outage/")
    try:
        settings.SSE_REDIS_URL = redis.url
        django_sse.send_event("news", "after the outage", channel="outage")
        assert data_of(client, 1, event="news") == ["after the outage"]
    finally:
        client.close()
    assert NEVER not in site.stderr_text(20000)


# --- send_event -----------------------------------------------------------------------


def _failed_after(error: PublishError) -> float:
    found = re.search(r"failed after (\d+\.\d+)s", str(error))
    assert found is not None, str(error)
    return float(found.group(1))


@pytest.mark.integration
def test_a_refused_publish_says_how_long_it_took_not_the_timeout(settings):
    """A refusal comes at once: the error says so, and no longer claims "within SSE_PUBLISH_TIMEOUT"."""
    settings.SSE_REDIS_URL = _dead_url()
    settings.SSE_PUBLISH_TIMEOUT = 30

    started = time.monotonic()
    with pytest.raises(PublishRefused) as raised:
        django_sse.send_event("e", "d", channel="down")
    measured = time.monotonic() - started

    stated = _failed_after(raised.value)
    assert stated <= measured + 0.01  # what it says is what happened...
    assert stated < 30  # ...which was not waiting out SSE_PUBLISH_TIMEOUT
    assert "within SSE_PUBLISH_TIMEOUT" not in str(raised.value)
    assert "SSE_PUBLISH_TIMEOUT is 30s" in str(raised.value)


@pytest.mark.integration
def test_a_publish_to_a_silent_server_says_it_waited_the_timeout(settings):
    """A server that never answers: the error says it failed after (at least) SSE_PUBLISH_TIMEOUT."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts: the backlog does
        settings.SSE_REDIS_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
        with pytest.raises(PublishError) as raised:
            django_sse.send_event("e", "d", channel="down")

    assert _failed_after(raised.value) >= PUBLISH_TIMEOUT


# --- check --deploy -------------------------------------------------------------------


def _deploy_ids() -> list[str]:
    messages = django_checks.run_checks(include_deployment_checks=True, tags=["django_sse"])
    return [message.id for message in messages]


@pytest.mark.integration
def test_check_deploy_fails_when_redis_does_not_answer(settings):
    """E054 names the address; plain check (and the workers' start-up checks) do not reach out."""
    url = _dead_url()
    settings.SSE_REDIS_URL = url
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT

    with pytest.raises(SystemCheckError, match="django_sse.E054") as raised:
        call_command("check", "--deploy", "--tag", "django_sse")
    call_command("check")  # no network in plain check
    run_startup_checks()

    assert _address(url) in str(raised.value)
    assert "django_sse.E054" not in [m.id for m in django_checks.run_checks(tags=["django_sse"])]


@pytest.mark.integration
def test_check_deploy_passes_when_redis_answers(settings, redis_url):
    settings.SSE_REDIS_URL = redis_url

    assert "django_sse.E054" not in _deploy_ids()


def test_check_deploy_says_nothing_of_the_memory_broker(settings):
    settings.SSE_REDIS_URL = None

    assert "django_sse.E054" not in _deploy_ids()


@pytest.mark.integration
def test_check_deploy_e054_can_be_silenced(settings):
    settings.SSE_REDIS_URL = _dead_url()
    settings.SSE_PUBLISH_TIMEOUT = PUBLISH_TIMEOUT
    settings.SILENCED_SYSTEM_CHECKS = ["django_sse.E054"]

    call_command("check", "--deploy", "--tag", "django_sse")


def test_never_reached_waits_for_the_first_attempt_only():
    """Before any attempt ended, never_reached() waits for it (bounded), then answers."""
    from django_sse.brokers.redis.common import FirstContact

    contact = FirstContact()
    threading.Timer(0.05, contact.failed).start()
    assert contact.never_reached(wait=60)
    contact.succeeded()
    assert not contact.never_reached(wait=60)
    contact.failed()  # an outage after the first contact
    assert not contact.never_reached(wait=60)
