"""Several hosts, for real: two web hosts and a Redis host, each in a network namespace of its own.

The module builds a LAN (``tests.support.netns``: a bridge in a "switch"
namespace) with three hosts on it: ``redis`` runs redis-server on
10.231.0.1; hosts ``a`` and ``b`` each run gunicorn (gevent) of the test
project, using that Redis, with a heartbeat of 1 s, one file SQLite
database (hosts share a database) and ``tests.channel_manager.UserChannels``.
Publishers run on host A as processes of their own (``ip netns exec``);
the test's SSE clients are sockets it opens from inside each host's
namespace, so every event crosses the LAN as in a real deployment.

Cutting host B off (its cable pulled, or its switch port dropping every
frame) sends no RST either way: each side finds out only by its own timers.
(``tc netem`` would do too, but not every kernel has it; this one lacks it.)
"""

from __future__ import annotations

import json
import re
import time

import pytest

from django_sse.brokers.redis.broker import SUBSCRIBER_IDLE_PING
from tests.support.netns import InNamespace, Network, Port
from tests.support.servers import GunicornServer, RedisServer, project_env
from tests.support.site import (
    MANAGER,
    REVOKE_ALICE_FROM_NEWS,
    USERS_SETUP,
    django_command,
    run_python,
)
from tests.support.sse import SseClient

pytestmark = pytest.mark.integration

HEARTBEAT = 1.0

_PUBLISH = """
import sys
import django
django.setup()
from django_sse import send_event
channels, start, count = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
for index in range(start, start + count):
    for channel in channels:
        send_event("n", f"{channel} {index}", channel=channel)
"""


class NamespacedRedis(InNamespace, RedisServer):
    """redis-server inside a namespace."""


class NamespacedGunicorn(InNamespace, GunicornServer):
    """gunicorn of the test project inside a namespace."""


class Host:
    """A web host: its namespace, its link to Redis, its gunicorn, and the environment of its processes."""

    def __init__(self, name: str, port: Port, env: dict[str, str], log_dir) -> None:
        self.name = name
        self.ns = port.ns
        self.port = port
        self.env = env
        self.server = NamespacedGunicorn(namespace=port.ns, env=env, log_dir=log_dir)

    def connect(self, path: str, cookie: str | None = None) -> SseClient:
        """Open a stream from inside this host; assert it is a 200."""
        headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
        with self.ns.entered():
            client = SseClient.connect(self.server.port, path, headers=headers, timeout=15)
        assert client.status == 200, (client.status, client.body[:500])
        return client

    def run(self, *args: str) -> str:
        """Run ``python ARGS`` on this host as the site's code would (its settings, its Redis)."""
        return run_python(self.env, *args, prefix=tuple(self.ns.prefix()))

    def publish(self, channels: list[str], start: int, count: int) -> list[str]:
        """Publish ``count`` events to each of ``channels`` from a process of this host; return their data in order."""
        self.run("-c", _PUBLISH, ",".join(channels), str(start), str(count))
        return [f"{c} {i}" for i in range(start, start + count) for c in channels]

    def log(self) -> str:
        """Return everything this host's gunicorn has written so far."""
        return self.server.log_path.read_text(errors="replace")


class Deployment:
    """What the ``deployment`` fixture started: Redis, hosts A and B, the users (pk and session cookie)."""

    def __init__(self, redis: NamespacedRedis, a: Host, b: Host, users: dict) -> None:
        self.redis = redis
        self.a = a
        self.b = b
        self.users = users


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Redis on its own host, hosts A and B with a gunicorn each; everything deleted at the end."""
    log_dir = tmp_path_factory.mktemp("hosts")
    network = Network()
    started = []
    try:
        lan = network.switch()
        on_redis, on_a, on_b = (lan.plug(network.namespace(name)) for name in ("redis", "a", "b"))
        redis = NamespacedRedis(
            namespace=on_redis.ns,
            log_dir=log_dir,
            extra_args=["--bind", "127.0.0.1", on_redis.address, "--protected-mode", "no"],
        )
        started.append(redis.start())
        env = project_env(
            f"redis://{on_redis.address}:{redis.port}/0",
            heartbeat=str(HEARTBEAT),
            settings={"SSE_CHANNEL_MANAGER": MANAGER},
            DJANGO_SETTINGS_MODULE="tests.settings",
            DJANGO_SSE_TEST_DB=str(log_dir / "db.sqlite3"),  # shared by both hosts
        )
        a, b = Host("A", on_a, env, log_dir), Host("B", on_b, env, log_dir)
        django_command(a.env, "migrate", "-v", "0")
        users = json.loads(
            django_command(a.env, "shell", "-c", USERS_SETUP).strip().splitlines()[-1]
        )
        for host in (a, b):
            started.append(host.server.start())
        yield Deployment(redis, a, b, users)
    finally:
        for server in reversed(started):
            server.stop()
            print(f"--- {server!r}, last output:\n{server.stderr_text(3000)}")
        network.close()
    assert network.left() == [], "namespaces left behind"


def gather(clients: list[SseClient], count: int, timeout: float) -> dict[SseClient, float]:
    """Read every client until it has ``count`` more events; return when each had them.

    Round robin with short reads, so each arrival time is within a few tens
    of milliseconds of the truth. A client still short after ``timeout`` is
    left out of the result (the caller prints what is missing, then fails).
    """
    done: dict[SseClient, float] = {}
    wanted = {client: len(client.events) + count for client in clients}
    deadline = time.monotonic() + timeout
    while len(done) < len(clients) and time.monotonic() < deadline:
        for client in clients:
            if client in done:
                continue
            try:
                client.read_bytes_until(lambda _, c=client: len(c.events) >= wanted[c], 0.02)
            except TimeoutError:
                continue
            done[client] = time.monotonic()
    return done


def listen(clients: list[SseClient], seconds: float) -> None:
    """Keep reading every client for ``seconds`` (heartbeats, events), expecting nothing in particular."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for client in clients:
            try:
                client.read_bytes_until(lambda _: False, timeout=0.05)
            except TimeoutError:
                pass


def received(client: SseClient, event: str = "n") -> list[str]:
    return [item.data for item in client.events if item.type == event]


def by_channel(data: list[str]) -> dict[str, list[str]]:
    """Split the data of ``publish()``'s events by channel, keeping their order.

    Order is per channel: a stream on several channels that catches up from
    history gets one channel's missed events, then the next one's.
    """
    channels: dict[str, list[str]] = {}
    for item in data:
        channels.setdefault(item.split()[0], []).append(item)
    return channels


def wait_all_live(clients: list[SseClient]) -> None:
    for client in clients:
        client.read_bytes_until(lambda _, c=client: c.parser.last_event_id != "", timeout=15)


# --- the tests ---------------------------------------------------------------------------


def test_an_event_published_on_host_a_reaches_every_client_on_both_hosts_once_in_order(
    deployment,
):
    """Fan-out across hosts: 3 clients per host on 2 channels get all 2 x 40 events, once, in order."""
    channels = ["fan-x", "fan-y"]
    path = "/multi/?channel=fan-x&channel=fan-y"
    clients = [host.connect(path) for host in (deployment.a, deployment.b) for _ in range(3)]
    try:
        wait_all_live(clients)
        sent = deployment.a.publish(channels, 0, 40)
        gather(clients, len(sent), timeout=20)
    finally:
        for client in clients:
            client.close()

    lost = [len(set(sent) - set(received(client))) for client in clients]
    duplicates = [len(received(client)) - len(set(received(client))) for client in clients]
    print(f"fan-out: {len(sent)} events x {len(clients)} clients on 2 hosts; "
          f"lost per client {lost}, duplicated {duplicates}")  # fmt: skip
    assert [by_channel(received(client)) for client in clients] == [by_channel(sent)] * len(clients)


def test_channel_permission_changed_on_host_a_ends_exactly_the_revoked_streams_on_both_hosts(
    deployment,
):
    """Alice loses group-news (revoked on A): her group-news streams on A and B end; bob's and her own go on."""
    cookie = {name: user["cookie"] for name, user in deployment.users.items()}
    hosts = (deployment.a, deployment.b)
    alice_news = [host.connect("/events/group-news/", cookie["alice"]) for host in hosts]
    bob_news = [host.connect("/events/group-news/", cookie["bob"]) for host in hosts]
    alice_own = [host.connect("/events/me/", cookie["alice"]) for host in hosts]
    clients = [*alice_news, *bob_news, *alice_own]
    try:
        wait_all_live(clients)
        deployment.a.run("-m", "django", "shell", "-c", REVOKE_ALICE_FROM_NEWS)
        revoked = time.monotonic()
        for client in alice_news:
            client.read_to_end(timeout=5)
        ended = time.monotonic() - revoked
        deployment.a.publish(["group-news", f"user-{deployment.users['alice']['pk']}"], 0, 1)
        gather([*bob_news, *alice_own], 1, timeout=10)
    finally:
        for client in clients:
            client.close()

    print(f"permission change: alice's {len(alice_news)} streams on 2 hosts had ended "
          f"{ended:.2f} s after the revoking process on A exited; bob's and her own went on")  # fmt: skip
    assert all(client.ended and not client.reset for client in alice_news)
    assert all(b"group-news 0" not in client.body for client in alice_news)
    assert [received(client) for client in bob_news] == [["group-news 0"]] * 2
    assert not any(client.ended for client in [*bob_news, *alice_own])


@pytest.mark.parametrize(
    ("cut", "seconds"),
    [("cable pulled", 4.0), ("switch drops", 15.0)],
    ids=["cable-pulled-4s", "switch-drops-15s"],
)
def test_host_b_cut_off_from_redis_keeps_beating_and_catches_up_when_the_link_returns(
    deployment, cut, seconds
):
    """B cut off: its streams stay open with heartbeats, A's get the events; back, B's get them all, in order, no reset."""
    a, b = deployment.a, deployment.b
    channels = [f"cut-{index}-{seconds:.0f}" for index in range(2)]
    path = "/multi/?" + "&".join(f"channel={channel}" for channel in channels)
    a_clients = [a.connect(path) for _ in range(2)]
    b_clients = [b.connect(path) for _ in range(3)]
    clients = [*a_clients, *b_clients]
    log_before = len(b.log())
    cut_off, reconnect = (
        (b.port.unplug, b.port.plug) if cut == "cable pulled" else (b.port.block, b.port.attach)
    )
    connected = True
    try:
        wait_all_live(clients)
        beats_before = [len(client.parser.comments) for client in b_clients]
        cut_off()
        connected = False
        cut_at = time.monotonic()
        sent = a.publish(channels, 0, 20)
        a_got = gather(a_clients, len(sent), timeout=10)
        listen(b_clients, cut_at + seconds - time.monotonic())
        beats = [len(c.parser.comments) - n for c, n in zip(b_clients, beats_before, strict=True)]
        during = [len(received(client)) for client in b_clients]
        reconnect()
        connected = True
        up_at = time.monotonic()
        b_got = gather(b_clients, len(sent), timeout=30)
        caught_up = max(b_got.values(), default=up_at) - up_at
        # Resubscribed: what is published now arrives live, on both hosts.
        sent += a.publish(channels, 20, 1)
        live = gather(clients, 2, timeout=10)
    finally:
        if not connected:
            reconnect()
        for client in clients:
            client.close()

    lost = sum(len(set(sent) - set(received(client))) for client in b_clients)
    duplicates = sum(len(received(c)) - len(set(received(c))) for c in b_clients)
    resets = sum(1 for client in b_clients for item in client.events if item.type == "stream-reset")
    log = b.log()[log_before:]
    losses = log.count("Lost the Redis subscription")
    print(
        f"{cut}, B cut off {seconds:.0f} s: heartbeats per B client meanwhile {beats}, events "
        f"meanwhile {during}; {len(b_got)} of {len(b_clients)} B clients had all {len(sent) - 2} "
        f"events {caught_up:.2f} s after the link returned; lost {lost}, duplicated {duplicates}, "
        f"resets {resets}; B's subscriber lost {losses} time(s), "
        f"restored after {re.findall(r'restored after ([0-9.]+)s', log) or 'n/a'} s"
    )
    assert (len(a_got), len(b_got), len(live)) == (len(a_clients), len(b_clients), len(clients))
    assert [by_channel(received(client)) for client in clients] == [by_channel(sent)] * len(clients)
    assert all(count >= 2 for count in beats), beats
    assert during == [0] * len(b_clients)
    assert resets == 0
    assert not any(client.ended for client in clients)
    if seconds > 2 * SUBSCRIBER_IDLE_PING:
        # Unanswered PINGs told B's subscriber during the cut: it resubscribed, and its
        # streams caught up from history, once the link returned (not at TCP's pace).
        assert losses == 1 and "Redis subscription restored" in log, log[-3000:]
