"""Redis Sentinel: docs/guides/redis-sentinel.rst, run for real, failover included.

Each test starts its own Sentinel-managed Redis: a master, two replicas and
three sentinels (quorum 2, ``down-after-milliseconds`` 1000), the data
servers with the password of the page's ``SSE_REDIS_URL``, the sentinels
with their own (``SSE_REDIS_SENTINEL_PASSWORD``). The failover test serves streams
from a gunicorn gevent site configured with the page's settings, publishes
a steady storm from this process, SIGKILLs the master mid-storm, and checks
what every client got against what ``send_event`` acknowledged and what
the new master's history holds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from django_sse import send_event
from django_sse.brokers.redis.broker import SENTINEL_DEFAULT_URL, RedisBroker
from django_sse.brokers.redis.sentinel import SentinelMaster
from django_sse.core.hub import Hub
from django_sse.core.mailbox import Mailbox
from django_sse.exceptions import PublishError, PublishOutcomeUnknown
from tests.support.polling import eventually
from tests.support.readme_samples import Samples, track
from tests.support.redis_helpers import connect, multi_path, open_live, wait_position
from tests.support.servers import REPO_TOP, free_port
from tests.support.sse import SseClient, StreamEnded

pytestmark = pytest.mark.integration

PAGE = REPO_TOP / "docs" / "guides" / "redis-sentinel.rst"
SAMPLES = Samples(PAGE)
sentinel_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

SETTINGS = SAMPLES.find("python", "SSE_REDIS_SENTINELS")
REPLICAS_SETTING = SAMPLES.find("python", "SSE_PUBLISH_REPLICAS")
PASSWORD = "sentinel-test-password"  # the master's and the replicas'
SENTINEL_PASSWORD = "the-sentinels-own"
SERVICE = "mymaster"
CHANNELS = ("a", "b", "c")
#: The site's and this process's SSE_PUBLISH_TIMEOUT: how long a publish may wait.
PUBLISH_TIMEOUT = 0.5


# --- a Sentinel-managed Redis ------------------------------------------------------------


class SentinelRedis:
    """A master and ``replicas`` replicas requiring ``PASSWORD``; ``sentinels`` sentinels requiring theirs."""

    def __init__(self, servers, replicas: int = 2, sentinels: int = 3) -> None:
        auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
        # No delay before a full sync: replicas are in sync within a second.
        data = [*auth, "--repl-diskless-sync-delay", "0"]
        self.master = servers.redis(extra_args=data)
        self.replicas = [
            servers.redis(extra_args=[*data, "--replicaof", "127.0.0.1", str(self.master.port)])
            for _ in range(replicas)
        ]
        self.sentinels = [
            servers.sentinel(
                master_port=self.master.port,
                service=SERVICE,
                auth_pass=PASSWORD,
                requirepass=SENTINEL_PASSWORD,
            )
            for _ in range(sentinels)
        ]

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until every sentinel knows the others and the replicas, and the replicas are in sync."""

        def state() -> list:
            views = [
                (view["num-other-sentinels"], view["num-slaves"], view["flags"])
                for view in (s.client().sentinel_master(SERVICE) for s in self.sentinels)
            ]
            return [views, self.master.replicas_acknowledge(len(self.replicas), PASSWORD)]

        others, replicas = len(self.sentinels) - 1, len(self.replicas)
        eventually(
            state,
            timeout,
            until=lambda s: all(v[:2] == (others, replicas) for v in s[0]) and s[1],
            what="sentinels and replicas ready",
        )

    def settings(self, replicas: int = 0) -> dict:
        """The page's settings, pointed at these sentinels (and SSE_PUBLISH_REPLICAS = ``replicas``)."""
        namespace: dict = {}
        os.environ["SSE_REDIS_PASSWORD"] = PASSWORD
        try:
            exec(compile(SETTINGS.code, str(PAGE), "exec"), namespace)
            if replicas:
                exec(compile(REPLICAS_SETTING.code, str(PAGE), "exec"), namespace)
        finally:
            del os.environ["SSE_REDIS_PASSWORD"]
        settings = {name: value for name, value in namespace.items() if name.startswith("SSE_")}
        assert len(settings["SSE_REDIS_SENTINELS"]) == 3
        settings["SSE_REDIS_SENTINELS"] = [sentinel.address for sentinel in self.sentinels]
        settings["SSE_REDIS_SENTINEL_PASSWORD"] = SENTINEL_PASSWORD
        settings["SSE_PUBLISH_REPLICAS"] = replicas
        settings["SSE_PUBLISH_TIMEOUT"] = PUBLISH_TIMEOUT
        return settings

    def master_address(self) -> tuple[str, int]:
        """The master's address as a running sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.running:
                host, port = sentinel.client().sentinel_get_master_addr_by_name(SERVICE)
                return host, int(port)
        raise AssertionError("no sentinel is running")

    def node(self, port: int):
        """The data server (master or replica) listening on ``port``."""
        [server] = [s for s in (self.master, *self.replicas) if s.port == port]
        return server


@pytest.fixture
def sentinel_redis(servers):
    redis = SentinelRedis(servers)
    redis.wait_ready()
    return redis


# --- the failover test --------------------------------------------------------------------


@dataclass
class Publication:
    channel: str
    data: str
    started: float
    seconds: float
    event_id: str | None = None
    error: str | None = None


@dataclass
class Reader:
    """One stream, read on its own thread until it has every channel's "final" event."""

    client: SseClient
    channels: tuple[str, ...]
    events: list = field(default_factory=list)  # (arrival, event)
    ended: bool = False
    thread: threading.Thread | None = None

    def start(self, deadline: float) -> None:
        self.thread = threading.Thread(target=self._run, args=(deadline,), daemon=True)
        self.thread.start()

    def _run(self, deadline: float) -> None:
        waiting = set(self.channels)
        while waiting and time.monotonic() < deadline:
            try:
                [event] = self.client.read_events(1, timeout=0.5)
            except StreamEnded:
                self.ended = True
                return
            except TimeoutError:
                continue
            self.events.append((time.monotonic(), event))
            if event.type == "final":
                waiting.discard(event.data)

    def settled(self) -> bool:
        """Whether every channel got its "end" event, or a stream-reset (which skips to the tip)."""
        ends = {event.data for _, event in self.events if event.type == "end"}
        return all(c in ends or self.reset_at(c) is not None for c in self.channels)

    def ticks(self, channel: str) -> list[tuple[float, str]]:
        return [
            (at, event.data)
            for at, event in self.events
            if event.type == "tick" and event.data.startswith(channel + "-")
        ]

    def reset_at(self, channel: str) -> float | None:
        """When the first stream-reset naming ``channel`` arrived, or None."""
        for at, event in self.events:
            if event.type == "stream-reset" and channel in json.loads(event.data)["channels"]:
                return at
        return None


def _publish(channel: str, data: str) -> Publication:
    started = time.monotonic()
    try:
        event_id = send_event("tick", data, channel=channel)
    except PublishError as exc:
        return Publication(channel, data, started, time.monotonic() - started, error=str(exc))
    return Publication(channel, data, started, time.monotonic() - started, event_id=event_id)


def _storm(stall, kill, timeout: float = 30) -> list[Publication]:
    """Publish round-robin on CHANNELS until 40 publishes in a row succeed after the kill.

    After 0.6 s, ``stall()`` (replication stops); 0.4 s later, ``kill()``.
    """
    publications: list[Publication] = []
    started = time.monotonic()
    phase = "before"
    run = 0
    while run < 40:
        assert time.monotonic() - started < timeout, "send_event never worked again"
        channel = CHANNELS[len(publications) % len(CHANNELS)]
        publication = _publish(channel, f"{channel}-{len(publications)}")
        publications.append(publication)
        elapsed = time.monotonic() - started
        if phase == "before" and elapsed > 0.6:
            stall()
            phase = "stalled"
        elif phase == "stalled" and elapsed > 1.0:
            kill()
            phase = "killed"
        elif phase == "killed":
            run = run + 1 if publication.event_id else 0
        time.sleep(0.003)
    return publications


@pytest.mark.parametrize("replicas", [0, 1], ids=["replicas-0", "replicas-1"])
def test_failover_mid_storm_keeps_streams_open_and_never_leaves_a_silent_gap(
    sentinel_redis, servers, settings, replicas
):
    """SIGKILL the master mid-storm: streams stay open, send_event fails fast then works, no silent gap."""
    redis = sentinel_redis
    site_settings = redis.settings(replicas)
    for name, value in site_settings.items():
        setattr(settings, name, value)
    site = servers.site("", heartbeat="0.5", settings=site_settings)
    paths = {
        multi_path(*CHANNELS): CHANNELS,
        multi_path("a", "c"): ("a", "c"),
        "/events/b/": ("b",),
        "/events/c/": ("c",),
    }
    readers = [Reader(open_live(site.port, path), channels) for path, channels in paths.items()]
    old_master = redis.master
    old_port = old_master.port
    assert redis.master_address()[1] == old_port
    for reader in readers:
        reader.start(deadline=time.monotonic() + 60)

    killed_at: list[float] = []

    def stall() -> None:
        # Replication breaks just before the crash: the replicas are stopped for 0.4 s (far
        # below down-after-milliseconds) and the master drops their links, so what it
        # publishes from now on reaches streams but never the replicas.
        for replica in redis.replicas:
            replica.send_signal(signal.SIGSTOP)
        with old_master.client(password=PASSWORD) as admin:
            admin.client_kill_filter(_type="replica")

    def kill() -> None:
        killed_at.append(time.monotonic())
        old_master.kill()
        for replica in redis.replicas:
            replica.send_signal(signal.SIGCONT)

    publications = _storm(stall, kill)
    for channel in CHANNELS:
        assert send_event("end", channel, channel=channel) is not None
    # A stream-reset skips to the channel's tip, "end" included: once every stream has
    # either, one more event shows that every stream is live again.
    eventually(lambda: all(r.settled() for r in readers), 20, what="every stream settled")
    for channel in CHANNELS:
        assert send_event("final", channel, channel=channel) is not None
    for reader in readers:
        assert reader.thread is not None
        reader.thread.join(20)

    # What the new master holds.
    host, port = redis.master_address()
    assert port != old_port, "the sentinels did not promote a replica"
    new_master = redis.node(port).client(password=PASSWORD)
    history = {
        channel: {fields[b"data"].decode() for _, fields in new_master.xrange(f"sse:{channel}")}
        for channel in CHANNELS
    }
    acked = [p for p in publications if p.event_id is not None]
    failed = [p for p in publications if p.error is not None]
    lost = [p.data for p in acked if p.data not in history[p.channel]]

    # Streams stayed open (the very connections opened before the kill) and got every final.
    assert [reader.ended for reader in readers] == [False] * len(readers)
    for reader in readers:
        finals = {event.data for _, event in reader.events if event.type == "final"}
        assert finals == set(reader.channels), (reader.channels, reader.events[-5:])

    # send_event failed fast during the switch, then worked (the storm ended on 40 successes).
    kill_time = killed_at[0]
    after_kill = [p for p in publications if p.started >= kill_time]
    assert any(p.error for p in after_kill), "no PublishError while the master was down"
    assert max(p.seconds for p in failed) <= PUBLISH_TIMEOUT + 2.0
    first_success = next(p for p in after_kill if p.event_id is not None)

    # Every client and channel: every acknowledged event in order, or a stream-reset, which
    # comes exactly when the client had received an event that the new master lacks.
    resets = 0
    attempted = {p.data: index for index, p in enumerate(publications)}
    flowing_again = []
    delivered_lost: set[str] = set()  # events some stream received that the new master lacks
    for reader in readers:
        for channel in reader.channels:
            ticks = reader.ticks(channel)
            got = [data for _, data in ticks]
            order = [attempted[data] for data in got]  # KeyError: an event never published
            assert order == sorted(set(order)), f"{channel}: out of order or duplicated: {got}"
            reset_at = reader.reset_at(channel)
            before_reset = [d for at, d in ticks if reset_at is None or at < reset_at]
            unknown_to_new_master = [d for d in before_reset if d not in history[channel]]
            if reset_at is None:
                missing = [p.data for p in acked if p.channel == channel and p.data not in got]
                assert missing == [], f"{channel}: acknowledged events never received: {missing}"
                assert unknown_to_new_master == []
            else:
                resets += 1
                assert unknown_to_new_master, f"{channel}: a stream-reset with nothing lost"
            delivered_lost.update(unknown_to_new_master)
        flowing_again.append(next(at for at, _ in reader.events if at > kill_time) - kill_time)
    if replicas:
        assert lost == [], f"acknowledged events that the new master lacks: {lost}"
    else:
        assert lost, "the stalled replication lost nothing: this run proves nothing about resets"

    log = site.stderr_text(10**6)
    restored = re.findall(r"Redis subscription restored after ([0-9.]+)s", log)
    assert restored, log[-3000:]
    print(
        f"\nSSE_PUBLISH_REPLICAS={replicas}: {len(publications)} publishes, {len(acked)} "
        f"acknowledged, {len(failed)} PublishError (slowest {max(p.seconds for p in failed):.2f}s); "
        f"acknowledged events lost: {len(lost)}; events streamed but lost with the old master: "
        f"{len(delivered_lost)}; stream-resets: {resets} of "
        f"{sum(len(r.channels) for r in readers)} client channels; send_event worked again "
        f"{first_success.started - kill_time:.2f}s after the kill; events reached every client "
        f"again after {max(flowing_again):.2f}s; the site's subscriber was restored after "
        f"{', '.join(restored)}s (its own count, from the lost connection)"
    )


# --- smaller behaviours ---------------------------------------------------------------------


class FixedMaster(SentinelMaster):
    """The sentinels' answer replaced by ``address``: a sentinel that has not noticed a demotion."""

    def __init__(self, sentinel_redis: SentinelRedis, address: tuple[str, int]) -> None:
        super().__init__(
            [("127.0.0.1", s.port) for s in sentinel_redis.sentinels],
            SERVICE,
            timeout=1,
            password=SENTINEL_PASSWORD,
        )
        self.fixed = address

    def address(self) -> tuple[str, int]:
        return self.fixed


def test_a_replica_named_as_master_is_refused_by_both_connections(sentinel_redis, caplog):
    """A server whose ROLE is not master: send_event raises naming it, and the subscriber never subscribes there."""
    replica = sentinel_redis.replicas[0]
    master = FixedMaster(sentinel_redis, ("127.0.0.1", replica.port))
    url = f"redis://:{PASSWORD}@{SERVICE}/0"
    broker = RedisBroker(url, prefix="sse:", timeout=1, maxlen=100, ttl=0, master=master)
    hub = Hub(broker)
    try:
        with pytest.raises(PublishError, match=f"127.0.0.1:{replica.port}.* is a slave now"):
            broker.publish("a", "tick", "x", history=True)
        with caplog.at_level(logging.WARNING, logger="django_sse.brokers.redis"):
            hub.attach(Mailbox(10), ["a"])
            eventually(
                lambda: [r for r in caplog.records if "is a slave now" in r.message],
                what="the subscriber's refusal logged",
            )
        assert not hub.ready(["a"])
        with replica.client(password=PASSWORD) as admin:
            assert admin.pubsub_channels("sse:*") == []  # (the sentinels' own hello channel aside)
    finally:
        hub.close()


def test_a_master_demoted_under_an_open_connection_fails_one_publish_then_the_next_goes_to_the_new_one(
    servers,
):
    """READONLY (a demoted master, its clients not killed): PublishError at once, and the next publish reconnects."""
    old, new = servers.redis(), servers.redis(extra_args=["--repl-diskless-sync-delay", "0"])
    master = FixedMaster.__new__(FixedMaster)
    SentinelMaster.__init__(master, [("127.0.0.1", free_port())], SERVICE, timeout=1)
    master.fixed = ("127.0.0.1", old.port)
    broker = RedisBroker(
        "redis://sentinel-managed/0", "sse:", timeout=1, maxlen=100, ttl=0, master=master
    )
    try:
        broker.publish("a", "tick", "on the old master", history=True)
        with old.client() as admin:
            admin.replicaof("127.0.0.1", new.port)  # demoted by hand: its clients stay connected
        master.fixed = ("127.0.0.1", new.port)  # what the sentinels now say
        with pytest.raises(PublishError, match="read only replica"):
            broker.publish("a", "tick", "refused by the old master", history=True)
        event_id = broker.publish("a", "tick", "on the new master", history=True)
        with new.client() as admin:
            assert [entry[0].decode() for entry in admin.xrange("sse:a")][-1] == event_id
    finally:
        broker.close()


def test_no_sentinel_knows_the_master_is_said_by_send_event(sentinel_redis, settings):
    """A wrong service name, or no sentinel password: send_event's PublishError says so, naming the sentinels."""
    for name, value in sentinel_redis.settings().items():
        setattr(settings, name, value)
    settings.SSE_REDIS_SENTINEL_SERVICE = "nosuchmaster"
    with pytest.raises(PublishError, match="no Sentinel of SSE_REDIS_SENTINELS .* 'nosuchmaster'"):
        send_event("tick", "x", channel="a")
    settings.SSE_REDIS_SENTINEL_SERVICE = SERVICE
    settings.SSE_REDIS_SENTINEL_PASSWORD = None  # the sentinels refuse: the error says why
    with pytest.raises(PublishError, match="no Sentinel of .*authenticated"):
        send_event("tick", "x", channel="a")


def test_a_rediss_url_reaches_the_sentinels_and_the_master_over_tls(servers, settings, tmp_path):
    """rediss:// with Sentinel: the sentinel and the master are reached over TLS only, verified by the URL's CA."""
    from tests.support.tls import make_certificates

    certificates = make_certificates(tmp_path)
    tls = {
        "tls-cert-file": certificates["server.crt"],
        "tls-key-file": certificates["server.key"],
        "tls-ca-cert-file": certificates["ca.crt"],
        "tls-auth-clients": "no",
    }
    master_tls_port, sentinel_tls_port = free_port(), free_port()
    master = servers.redis(
        extra_args=[
            "--tls-port",
            str(master_tls_port),
            *(arg for name, value in tls.items() for arg in (f"--{name}", value)),
        ]
    )
    # The sentinel watches the master's TLS port (tls-replication: it speaks TLS there),
    # and serves TLS on its own; its plain port is the test's.
    servers.sentinel(
        master_port=master_tls_port,
        service=SERVICE,
        quorum=1,
        extra_config=[
            f"tls-port {sentinel_tls_port}",
            "tls-replication yes",
            *(f"{k} {v}" for k, v in tls.items()),
        ],
    )
    settings.SSE_REDIS_SENTINELS = [f"127.0.0.1:{sentinel_tls_port}"]
    settings.SSE_REDIS_SENTINEL_SERVICE = SERVICE
    settings.SSE_REDIS_URL = f"rediss://{SERVICE}/0?ssl_ca_certs={certificates['ca.crt']}"
    site = servers.site(
        "",
        settings={
            name: getattr(settings, name)
            for name in ("SSE_REDIS_SENTINELS", "SSE_REDIS_SENTINEL_SERVICE", "SSE_REDIS_URL")
        },
    )
    with connect(site.port, "/events/tls/") as client:
        wait_position(client)
        event_id = send_event("tick", "over tls", channel="tls")
        [event] = client.read_events(1)
    assert (event.data, event.last_event_id) == ("over tls", event_id)
    with master.client() as admin:
        assert admin.xlen("sse:tls") == 1

    settings.SSE_REDIS_URL = f"rediss://{SERVICE}/0"  # the system does not trust the test CA
    with pytest.raises(PublishError, match="certificate verify failed"):
        send_event("tick", "x", channel="tls")


def test_the_acl_line_with_role_and_wait_is_enough(servers, settings, tmp_path, caplog):
    """The page's ACL claim: the redis-security line plus +role (Sentinel) and +wait (replicas) serve a stream."""
    from tests.test_redis_security import ACL_LINE

    acl = tmp_path / "users.acl"
    line = ACL_LINE.code.strip().replace(">PASSWORD", ">" + PASSWORD)
    acl.write_text(f"user default on nopass ~* &* +@all\n{line} +role +wait\n")
    master = servers.redis(extra_args=["--aclfile", str(acl), "--repl-diskless-sync-delay", "0"])
    servers.redis(extra_args=["--replicaof", "127.0.0.1", str(master.port)])
    sentinel = servers.sentinel(master_port=master.port, service=SERVICE, quorum=1)
    eventually(lambda: master.replicas_acknowledge(1), what="the replica in sync")
    app_settings = {
        "SSE_REDIS_SENTINELS": [sentinel.address],
        "SSE_REDIS_SENTINEL_SERVICE": SERVICE,
        "SSE_REDIS_URL": f"redis://sse-app:{PASSWORD}@{SERVICE}/0",
        "SSE_PUBLISH_REPLICAS": 1,
    }
    for name, value in app_settings.items():
        setattr(settings, name, value)
    site = servers.site("", settings=app_settings)
    with connect(site.port, "/events/acl/") as client:
        wait_position(client)
        event_id = send_event("tick", "allowed", channel="acl")
        [event] = client.read_events(1)
    assert (event.data, event.last_event_id) == ("allowed", event_id)

    with master.client() as admin:
        admin.execute_command("ACL", "SETUSER", "sse-app", "-role")
    settings.SSE_PUBLISH_TIMEOUT = 2  # a new broker, so a new connection
    with pytest.raises(
        PublishError, match="no permissions to run the 'role' command.*redis-sentinel.rst"
    ):
        send_event("tick", "refused", channel="acl")
    broker = RedisBroker(
        app_settings["SSE_REDIS_URL"],
        prefix="sse:",
        timeout=1,
        maxlen=100,
        ttl=0,
        master=SentinelMaster([("127.0.0.1", sentinel.port)], SERVICE, timeout=1),
    )
    hub = Hub(broker)
    try:
        with caplog.at_level(logging.ERROR, logger="django_sse.brokers.redis"):
            hub.attach(Mailbox(10), ["acl"])
            eventually(
                lambda: [r for r in caplog.records if "refused the subscription" in r.message],
                what="the subscriber's refusal logged",
            )
        [refusal] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "'role'" in refusal.message and "redis-sentinel.rst" in refusal.message
    finally:
        hub.close()


def test_publish_replicas_without_sentinel_waits_for_the_replica_and_says_when_it_cannot(servers):
    """A master with one replica, no Sentinel: publish returns once the replica holds it, else says so."""
    master = servers.redis(extra_args=["--repl-diskless-sync-delay", "0"])
    replica = servers.redis(extra_args=["--replicaof", "127.0.0.1", str(master.port)])
    eventually(lambda: master.replicas_acknowledge(1), what="the replica in sync")
    broker = RedisBroker(master.url, prefix="sse:", timeout=0.5, maxlen=100, ttl=0, replicas=1)
    try:
        event_id = broker.publish("a", "tick", "held twice", history=True)
        with replica.client() as watcher:
            assert [e[0].decode() for e in watcher.xrange("sse:a")] == [event_id]
        replica.send_signal(signal.SIGSTOP)  # replication stalls
        try:
            with pytest.raises(
                PublishOutcomeUnknown, match="but only 0 of SSE_PUBLISH_REPLICAS=1"
            ) as error:
                broker.publish("a", "tick", "on the master only", history=True)
        finally:
            replica.send_signal(signal.SIGCONT)
        with master.client() as admin:
            [_, (unconfirmed, _)] = admin.xrange("sse:a")
        assert unconfirmed.decode() in str(error.value)  # the error names the event
    finally:
        broker.close()


def test_the_publish_replicas_benchmark_runs(capsys):
    """benchmarks/publish_replicas.py, tiny: both values measured (the figures belong to its run)."""
    from benchmarks import publish_replicas

    results = publish_replicas.run(n=20, replicas=1, waits=[0, 1])
    assert [r["replicas_waited_for"] for r in results] == [0, 1]
    assert all(r["publishes"] == 20 and 0 < r["median_ms"] <= r["p95_ms"] for r in results)


def test_without_sse_redis_url_the_master_is_database_0_without_password(settings):
    """SSE_REDIS_URL may be left out with Sentinel: the broker uses db 0, no password, no TLS."""
    from django_sse.core import runtime

    settings.SSE_REDIS_URL = None
    settings.SSE_REDIS_SENTINELS = ["127.0.0.1:26379", "[::1]:26380"]
    settings.SSE_REDIS_SENTINEL_SERVICE = SERVICE
    broker = runtime.build_broker()  # connects to nothing yet
    try:
        assert isinstance(broker, RedisBroker) and broker.master is not None
        assert broker.master.sentinels == [("127.0.0.1", 26379), ("::1", 26380)]
        assert broker.url == SENTINEL_DEFAULT_URL == "redis://sentinel-managed/0"
    finally:
        broker.close()


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/redis-sentinel.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
