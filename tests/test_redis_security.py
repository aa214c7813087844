"""Redis over TLS with a least-privilege ACL user: docs/guides/redis-security.rst, run for real.

Each test starts its own redis-server with TLS (a CA and a server
certificate made here with ``openssl``) and the ACL line of the page, then
runs the library through the page's ``rediss://`` URL: a gunicorn site
streams what this process publishes, resumes after ``Last-Event-ID``,
reports presence and ends a revoked stream. A user without one permission
gets an error that names it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.parse

import pytest

from django_sse import channel_permission_changed, channel_presence, send_event
from django_sse.brokers.redis.broker import ACL_HINT, RedisBroker
from django_sse.core.hub import Hub
from django_sse.core.mailbox import Mailbox
from django_sse.exceptions import PublishError
from tests.support.polling import eventually
from tests.support.readme_samples import Samples, track
from tests.support.redis_helpers import connect, wait_position
from tests.support.servers import REPO_TOP, RedisServer
from tests.support.tls import make_certificates

pytestmark = pytest.mark.integration

PAGE = REPO_TOP / "docs" / "guides" / "redis-security.rst"
SAMPLES = Samples(PAGE)
security_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

TLS_SETTINGS = SAMPLES.find("python", "rediss://")
ACL_LINE = SAMPLES.find("text", "user sse-app")
PASSWORD = "correct-horse-battery-staple"


# --- a redis-server with TLS and the page's ACL user -----------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SecureRedis:
    """redis-server: plain port for the test's own checks (user ``default``), TLS port for the app."""

    def __init__(self, directory, acl_line: str) -> None:
        self.certificates = make_certificates(directory)
        self.tls_port = free_port()
        acl = directory / "users.acl"
        acl.write_text(
            "user default on nopass ~* &* +@all\n"
            + acl_line.replace(">PASSWORD", ">" + PASSWORD).strip()
            + "\n"
        )
        self.server = RedisServer(
            log_dir=directory,
            extra_args=[
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", self.certificates["server.crt"],
                "--tls-key-file", self.certificates["server.key"],
                "--tls-ca-cert-file", self.certificates["ca.crt"],
                "--tls-auth-clients", "no",
                "--aclfile", str(acl),
            ],
        )  # fmt: skip
        self.server.start()

    def url(self) -> str:
        """The page's SSE_REDIS_URL, pointed at this server and its CA."""
        namespace: dict = {}
        os.environ["SSE_REDIS_PASSWORD"] = PASSWORD
        try:
            exec(compile(TLS_SETTINGS.code, str(PAGE), "exec"), namespace)
        finally:
            del os.environ["SSE_REDIS_PASSWORD"]
        shown = urllib.parse.urlsplit(namespace["SSE_REDIS_URL"])
        query = dict(urllib.parse.parse_qsl(shown.query))
        assert (shown.scheme, shown.username, shown.password) == ("rediss", "sse-app", PASSWORD)
        assert set(query) == {"ssl_ca_certs"}
        query["ssl_ca_certs"] = self.certificates["ca.crt"]
        netloc = f"{shown.username}:{urllib.parse.quote(PASSWORD)}@127.0.0.1:{self.tls_port}"
        return urllib.parse.urlunsplit(
            (shown.scheme, netloc, shown.path, urllib.parse.urlencode(query), "")
        )

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def secure_redis(tmp_path):
    redis = SecureRedis(tmp_path, ACL_LINE.code)
    yield redis
    redis.stop()


# --- the tests ---------------------------------------------------------------------------


def test_the_pages_url_and_acl_line_run_every_feature_over_tls(secure_redis, servers, settings):
    """Publish, stream, resume, presence and a revocation, all as the ACL user over TLS."""
    url = secure_redis.url()
    settings.SSE_REDIS_URL = url
    server = servers.site(url, heartbeat="1", settings={"SSE_PRESENCE_INTERVAL": 0.3})
    with connect(server.port, "/events/secure/") as first:
        wait_position(first)
        ids = [send_event("tick", str(index), channel="secure") for index in range(3)]
        assert [event.data for event in first.read_events(3)] == ["0", "1", "2"]
        assert [event.last_event_id for event in first.events] == ids
        assert send_event("typing", "x", channel="secure", history=False) is None
        [typing] = first.read_events(1)
        assert typing.data == "x"
    send_event("tick", "missed", channel="secure")
    with connect(server.port, "/events/secure/", ids[-1]) as resumed:
        [missed] = resumed.read_events(1)
        assert missed.data == "missed"

    with connect(server.port, "/owned-events/private/?owner=7") as owned:
        wait_position(owned)
        # Presence reports (SET, ZADD, ... by the server; ZRANGE, MGET here) are allowed.
        eventually(
            lambda: channel_presence("private"),
            until=lambda presence: presence.users == {"7"},
            what="the owner's presence",
        )
        # The control channel is allowed: publishing on it raises nothing.
        channel_permission_changed(SimpleUser(7), "private")

    with secure_redis.server.client() as admin:  # the test's own user, on the plain port
        assert admin.exists("sse:secure") and admin.xlen("sse:secure") == 4


def test_without_the_ca_the_certificate_is_refused(secure_redis, settings):
    """TLS is verified: the same URL without ssl_ca_certs fails to publish (the system does not trust the test CA)."""
    url = secure_redis.url()
    settings.SSE_REDIS_URL = url.split("?", 1)[0]
    with pytest.raises(PublishError, match="certificate verify failed"):
        send_event("tick", "x", channel="secure")


def test_a_missing_command_is_named_by_send_event_and_by_the_subscriber(tmp_path, settings, caplog):
    """Without +xadd, send_event's PublishError names the script's commands; without the channels, one ERROR line."""
    line = ACL_LINE.code.replace(" +xadd", "").replace(" &sse:*", " &sse:django-sse*")
    redis = SecureRedis(tmp_path, line)
    try:
        url = redis.url()
        settings.SSE_REDIS_URL = url
        with pytest.raises(PublishError) as refused:
            send_event("tick", "x", channel="secure")
        # Redis does not say which command of the script it refused: the error lists them.
        assert "TIME, XADD, XTRIM, PEXPIRE and PUBLISH" in str(refused.value)
        assert ACL_HINT in str(refused.value)

        broker = RedisBroker(url, prefix="sse:", timeout=5, maxlen=100, ttl=0)
        hub = Hub(broker)
        try:
            with caplog.at_level(logging.ERROR, logger="django_sse.brokers.redis"):
                hub.attach(Mailbox(10), ["secure"])
                eventually(
                    lambda: [r for r in caplog.records if "refused the subscription" in r.message],
                    what="the refused subscription logged",
                )
            time.sleep(0.5)  # retried with backoff meanwhile: still one line
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "NOPERM" in errors[0].message and ACL_HINT in errors[0].message
            assert not hub.ready(["secure"])
        finally:
            hub.close()
    finally:
        redis.stop()


class SimpleUser:
    """A stand-in for a user: what channel_permission_changed reads (its pk)."""

    def __init__(self, pk: int) -> None:
        self.pk = pk
        self.is_authenticated = True


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/redis-security.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
