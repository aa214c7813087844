"""Redis Cluster with sharded pub/sub: a real 3-master cluster (a replica each), a gunicorn site.

The module forms one cluster of six redis-servers on free loopback ports
(``RedisClusterServers``) and runs the test project on it with
``SSE_REDIS_CLUSTER = True``: streams on channels of every shard, a slot
migrated under a steady publish, a permission change across shards, the
per-slot resubscription after a shard's subscriber connection is killed,
and last (it kills a master) a replica's promotion. Fault tests print what
they measured: events lost, stream-resets, seconds until resubscribed.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.core import checks

import django_sse
from django_sse.brokers.redis.checks import check_cluster
from django_sse.brokers.redis.cluster import RedisClusterBroker, _keyslot
from django_sse.conf import sse_settings
from django_sse.core.hub import Hub
from django_sse.core.mailbox import Mailbox
from django_sse.exceptions import PublishError
from tests.support.polling import eventually
from tests.support.procfs import redis_connections_of
from tests.support.readme_samples import Samples, track
from tests.support.redis_helpers import connect, data_of, multi_path, open_live
from tests.support.servers import REPO_TOP, RedisClusterServers, RedisServer

pytestmark = pytest.mark.integration

PAGE = REPO_TOP / "docs" / "guides" / "redis-cluster.rst"
SAMPLES = Samples(PAGE)
cluster_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed
SETTINGS = SAMPLES.find("python", "SSE_REDIS_CLUSTER = True")
RESET = "stream-reset"
MANAGER = "tests.channel_manager.RevokedInFile"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = time.monotonic()
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"), replicas=True)
    servers.start()
    print(f"cluster of 6 formed in {time.monotonic() - started:.1f}s")
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def revoked_file(tmp_path_factory):
    return tmp_path_factory.mktemp("revoked") / "revoked.txt"


@pytest.fixture(scope="module")
def site(cluster, module_servers, revoked_file):
    """gunicorn (gevent, one worker) of the test project on the cluster."""
    return module_servers.site(
        cluster.url,
        heartbeat="1",
        settings={
            "SSE_REDIS_CLUSTER": True,
            "SSE_PUBLISH_TIMEOUT": 1,
            "SSE_CHANNEL_MANAGER": MANAGER,
        },
        env={"DJANGO_SSE_TEST_REVOKED_FILE": str(revoked_file)},
    )


@pytest.fixture
def on_cluster(cluster, settings):
    """send_event in this process publishes to the cluster."""
    settings.SSE_REDIS_URL = cluster.url
    settings.SSE_REDIS_CLUSTER = True
    settings.SSE_PUBLISH_TIMEOUT = 1
    return cluster


def channels_on(cluster: RedisClusterServers, stem: str, masters=None) -> list[str]:
    """Return one channel name per master (of ``masters``), named ``<stem>-<n>``, asserted apart."""
    masters = masters or [node for node in cluster.masters if node.running]
    found: dict[int, str] = {}
    owners = {node.port: node for node in cluster.nodes}
    n = 0
    while len(found) < len(masters):
        name = f"{stem}-{n}"
        owner = cluster.owner_of(_keyslot(f"sse:{{{name}}}"))
        if owner in masters and owner.port not in found:
            found[owner.port] = name
        n += 1
    names = [found[node.port] for node in masters]
    assert len({cluster.owner_of(_keyslot(f"sse:{{{c}}}")).port for c in names}) == len(masters)
    assert all(port in owners for port in found)
    return names


def subscriber_connections(cluster: RedisClusterServers) -> dict[int, int]:
    """Return, per running node, how many clients are in (sharded) pub/sub mode."""
    counts = {}
    for node in cluster.nodes:
        if node.running:
            with node.client() as admin:
                counts[node.port] = sum(
                    1 for c in admin.client_list() if "P" in c["flags"] or int(c.get("ssub", 0))
                )
    return counts


def shard_subscribers(node: RedisServer, channels: list[str]) -> dict[str, int]:
    """Return how many clients of ``node`` subscribe each channel's shard channel."""
    with node.client() as admin:
        reply = admin.execute_command("PUBSUB SHARDNUMSUB", *(f"sse:{{{c}}}" for c in channels))
    return {key.decode(): int(count) for key, count in reply}  # redis-py pairs them up


def worker_connections(site, cluster: RedisClusterServers) -> dict[int, int]:
    [pid] = site.worker_pids()
    return {node.port: redis_connections_of(pid, node.port) for node in cluster.nodes}


# --- 5. naming and checks (no server) ------------------------------------------------------


@pytest.mark.parametrize("channel", ["news", "a{b}", "}x", "{}", "a}b{c", "ü"])
def test_stream_key_and_shard_channel_are_one_string_in_one_slot(channel):
    """<prefix>{<channel>}: any name, braces too, maps back to itself and shares one slot."""
    broker = RedisClusterBroker("redis://127.0.0.1:1/0", "sse:", 1, 10, 0)
    key = broker._key(channel)
    assert key == "sse:{" + channel + "}"
    assert broker._channel_of(key.encode()) == channel
    # The stream key and the shard channel are the same string: one slot whatever it holds.
    assert _keyslot(key) == _keyslot(broker._key(channel))
    assert broker.control_key == "sse:{django-sse control}"
    report = broker._presence_report_key("host:1")
    assert _keyslot(report) == _keyslot(broker.presence_key)


def test_cluster_checks(settings):
    """E045-E049: a non-bool, the memory broker, Sentinel too, a unix socket or db, a brace in the prefix."""

    def ids():
        return [message.id for message in check_cluster(sse_settings)]

    settings.SSE_REDIS_URL = "redis://127.0.0.1:7000/0"
    settings.SSE_REDIS_CLUSTER = "yes"
    assert ids() == ["django_sse.E045"]
    settings.SSE_REDIS_CLUSTER = True
    assert ids() == []
    settings.SSE_BROKER = "memory"
    assert ids() == ["django_sse.E046"]
    settings.SSE_BROKER = None
    settings.SSE_REDIS_SENTINELS = [("127.0.0.1", 26379)]
    assert ids() == ["django_sse.E047"]
    settings.SSE_REDIS_SENTINELS = None
    settings.SSE_REDIS_URL = "unix:///run/redis.sock"
    assert ids() == ["django_sse.E048"]
    settings.SSE_REDIS_URL = "redis://127.0.0.1:7000/3"
    assert ids() == ["django_sse.E048"]
    settings.SSE_REDIS_URL = "redis://127.0.0.1:7000"
    settings.SSE_REDIS_PREFIX = "sse{app}:"
    [message] = check_cluster(sse_settings)
    assert message.id == "django_sse.E049" and "SSE_REDIS_PREFIX" in message.msg
    assert isinstance(message, checks.Error)


# --- 1. fan-out over every shard ------------------------------------------------------------


def test_streams_on_every_shard_get_every_event_once_in_order(on_cluster, site, settings):
    """Channels on 3 masters: one-channel and multi-channel streams get all, in order; replay and reset per channel."""
    cluster = on_cluster
    page: dict = {}
    exec(compile(SETTINGS.code, str(PAGE), "exec"), page)  # the page's settings, on this cluster
    assert {k for k in page if k.startswith("SSE_")} == {"SSE_REDIS_URL", "SSE_REDIS_CLUSTER"}
    settings.SSE_REDIS_CLUSTER = page["SSE_REDIS_CLUSTER"]
    channels = channels_on(cluster, "fan")
    singles = [open_live(site.port, f"/events/{channel}/") for channel in channels]
    multi = open_live(site.port, multi_path(*channels))
    try:
        # One subscriber connection per shard with channels (the control channel shares one).
        subscribers = subscriber_connections(cluster)
        print("subscriber connections per node:", subscribers)
        assert sorted(subscribers[m.port] for m in cluster.masters) == [1, 1, 1]
        assert all(subscribers[r.port] == 0 for r in cluster.replicas)
        sent = {channel: [] for channel in channels}
        for index in range(30):
            channel = channels[index % 3]
            sent[channel].append(f"{channel}:{index}")
            django_sse.send_event("tick", sent[channel][-1], channel=channel)
        for client, channel in zip(singles, channels, strict=True):
            assert data_of(client, 10, event="tick") == sent[channel]
        got = data_of(multi, 30, event="tick")
        for channel in channels:
            assert [d for d in got if d.startswith(channel + ":")] == sent[channel]
        # Command connections: at most one per node (a blocking pool of one), plus subscribers.
        connections = worker_connections(site, cluster)
        print("worker's connections per node:", connections)
        assert all(connections[m.port] <= 2 for m in cluster.masters)

        # Replay after Last-Event-ID, per channel.
        resume_at = singles[0].parser.last_event_id
        singles[0].close()
        missed = [f"missed {n}" for n in range(3)]
        for data in missed:
            django_sse.send_event("tick", data, channel=channels[0])
        with connect(site.port, f"/events/{channels[0]}/", resume_at) as resumed:
            assert data_of(resumed, 3, event="tick") == missed
        # A position whose history is gone: stream-reset on that channel's stream.
        with cluster.owner_of(_keyslot(f"sse:{{{channels[1]}}}")).client() as owner:
            owner.delete(f"sse:{{{channels[1]}}}")
        with connect(site.port, f"/events/{channels[1]}/", singles[1].parser.last_event_id) as lost:
            [reset] = lost.read_events(1)
            assert reset.type == RESET
    finally:
        for client in [*singles, multi]:
            client.close()
    # Streams ended: the shards' subscriber connections close, the control channel's stays.
    remaining = eventually(
        lambda: subscriber_connections(cluster),
        until=lambda counts: sum(counts.values()) == 1,
        what="one subscriber connection left (the control channel's)",
    )
    print("after every stream ended:", remaining)


def test_many_streams_coming_and_going_keep_one_subscriber_per_shard(on_cluster, site):
    """60 streams over 12 channels open and close: never more than one subscriber connection per master."""
    cluster = on_cluster
    channels = [f"churn-{n}" for n in range(12)]
    shards = {cluster.owner_of(_keyslot(f"sse:{{{c}}}")).port for c in channels}
    peak: dict[int, int] = {}
    for _ in range(3):
        clients = [open_live(site.port, f"/events/{channels[n % 12]}/") for n in range(20)]
        counts = subscriber_connections(cluster)
        for port, count in counts.items():
            peak[port] = max(peak.get(port, 0), count)
        for client in clients:
            client.close()
    control = cluster.owner_of(_keyslot("sse:{django-sse control}")).port
    print("peak subscriber connections per node:", peak, "shards with channels:", len(shards))
    assert all(count <= 1 for count in peak.values())
    assert sum(peak.values()) == len(shards | {control})
    eventually(
        lambda: sum(subscriber_connections(cluster).values()),
        until=lambda total: total == 1,
        what="only the control channel's subscriber left",
    )


# --- 4. a permission change reaches streams on every shard ----------------------------------


def test_channel_permission_changed_across_the_cluster_ends_the_right_streams(
    on_cluster, site, revoked_file
):
    """The control message (a shard channel) ends the owner's stream of the revoked channel only."""
    first, second, _ = channels_on(on_cluster, "perm")
    revoked = open_live(site.port, f"/owned-events/{first}/?owner=7")
    other_channel = open_live(site.port, f"/owned-events/{second}/?owner=7")
    other_owner = open_live(site.port, f"/owned-events/{first}/?owner=8")
    try:
        revoked_file.write_text(first + "\n")
        django_sse.channel_permission_changed(7, first)
        revoked.read_bytes_until(lambda _: revoked.ended, timeout=10)
        django_sse.send_event("tick", "still", channel=first)
        django_sse.send_event("tick", "still", channel=second)
        assert data_of(other_owner, 1, event="tick") == ["still"]
        assert data_of(other_channel, 1, event="tick") == ["still"]
        assert not other_owner.ended and not other_channel.ended
    finally:
        revoked_file.write_text("")
        for client in (revoked, other_channel, other_owner):
            client.close()


# --- 5. per-slot resubscription -------------------------------------------------------------


def test_a_killed_subscriber_connection_resubscribes_per_slot(on_cluster, caplog):
    """20 channels of one master in 20 slots: after CLIENT KILL they are all confirmed again, no CROSSSLOT."""
    cluster = on_cluster
    master = cluster.masters[1]
    names, slots = [], set()
    n = 0
    while len(names) < 20:
        name = f"slot-{n}"
        slot = _keyslot(f"sse:{{{name}}}")
        if cluster.owner_of(slot) is master and slot not in slots:
            names.append(name)
            slots.add(slot)
        n += 1
    broker = RedisClusterBroker(cluster.url, "sse:", timeout=2, maxlen=100, ttl=0)
    hub = Hub(broker)
    mailbox = Mailbox(1000)
    try:
        hub.attach(mailbox, names)
        eventually(lambda: hub.ready(names), what="20 channels ready")
        with master.client() as admin:
            killed = admin.client_kill_filter(_type="pubsub")
        started = time.monotonic()
        assert killed >= 1
        eventually(lambda: not hub.ready(names), timeout=5, interval=0.01, what="the loss seen")
        eventually(lambda: hub.ready(names), timeout=10, interval=0.02, what="all resubscribed")
        seconds = time.monotonic() - started
        for name in names:
            broker.publish(name, "tick", name, True)
        delivered = eventually(
            lambda: [m for m in mailbox._items if getattr(m, "event", None) == "tick"],
            until=lambda found: len(found) == 20,
            what="20 events after resubscribing",
        )
        print(f"resubscribed 20 channels in 20 slots after {seconds:.2f}s; events lost: "
              f"{20 - len(delivered)}")  # fmt: skip
        assert not [r for r in caplog.records if "CROSSSLOT" in r.getMessage()]
        assert all(count == 1 for count in shard_subscribers(master, names).values())
        # Presence's transaction (WATCH, ZRANGE, MGET) stays in the slot of its hash tag.
        broker.write_presence("test:1", '{"streams": 0}', 5)
        assert '{"streams": 0}' in broker.read_presence()  # beside the site worker's own
    finally:
        hub.close()


def test_channel_names_with_braces_publish_replay_and_go_live(on_cluster):
    """Names holding braces hash on part of themselves; key and shard channel still share a slot."""
    names = ["a}b{c", "{}", "x{y}", "{news}"]
    broker = RedisClusterBroker(on_cluster.url, "sse:", timeout=2, maxlen=100, ttl=0)
    hub = Hub(broker)
    mailbox = Mailbox(100)
    try:
        hub.attach(mailbox, names)
        eventually(lambda: hub.ready(names), what="every name ready")
        ids = {name: broker.publish(name, "tick", name, True) for name in names}
        live = eventually(
            lambda: {m.channel: m.id for m in mailbox._items if getattr(m, "event", "") == "tick"},
            until=lambda found: len(found) == len(names),
            what="one live event per name",
        )
        assert live == ids
        for name in names:
            [message] = broker.read_history(name, (0, 0), 10).messages
            assert (message.data, message.id) == (name, ids[name])
    finally:
        hub.close()


def test_an_ssubscribe_answered_moved_is_sent_again_to_the_owner(on_cluster):
    """With a stale slot map the SSUBSCRIBE reaches the wrong master: its MOVED is followed, then ready."""
    cluster = on_cluster
    [name] = channels_on(cluster, "stale", [cluster.masters[0]])
    wrong = next(m for m in cluster.masters if m is not cluster.masters[0] and m.running)
    broker = RedisClusterBroker(cluster.url, "sse:", timeout=2, maxlen=100, ttl=0)
    hub = Hub(broker)
    try:
        nodes = broker._commands().nodes_manager
        slot = _keyslot(broker._key(name))
        nodes.slots_cache[slot] = [nodes.get_node(host="127.0.0.1", port=wrong.port)]
        hub.attach(Mailbox(10), [name])
        eventually(lambda: hub.ready([name]), what="ready on the slot's owner")
        assert shard_subscribers(cluster.owner_of(slot), [name]) == {broker._key(name): 1}
        assert shard_subscribers(wrong, [name]) == {broker._key(name): 0}
    finally:
        hub.close()


def test_presence_follows_its_slot_to_another_master(on_cluster):
    """Presence's transaction runs on its slot's master; after the slot moved, MOVED is followed."""
    cluster = on_cluster
    broker = RedisClusterBroker(cluster.url, "sse:", timeout=2, maxlen=100, ttl=0)
    try:
        broker.write_presence("test:2", "before", 5)
        slot = _keyslot(broker.presence_key)
        source = cluster.owner_of(slot)
        target = next(m for m in cluster.masters if m is not source and m.running)
        cluster.migrate_slot(slot, target)
        cluster.wait_ok()
        broker.write_presence("test:2", "after", 5)  # the broker's map still names the source
        assert "after" in broker.read_presence()
        with target.client() as admin:
            assert admin.get(broker._presence_report_key("test:2")) == b"after"
    finally:
        broker.close()


# --- 2. slot migration ------------------------------------------------------------------------


class Publisher:
    """Publishes ``tick`` events to ``channels`` in turn, every ``interval`` s, from a thread."""

    def __init__(self, channels: list[str], interval: float = 0.01) -> None:
        self.channels = channels
        self.interval = interval
        self.acknowledged: dict[str, list[str]] = {c: [] for c in channels}
        self.refused = 0
        self.first_refusal: float | None = None
        self.last_refusal: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            channel = self.channels[index % len(self.channels)]
            data = f"{channel}:{index}"
            try:
                django_sse.send_event("tick", data, channel=channel)
                self.acknowledged[channel].append(data)
            except PublishError:
                self.refused += 1
                now = time.monotonic()
                self.first_refusal = self.first_refusal or now
                self.last_refusal = now
            index += 1
            time.sleep(self.interval)

    def count(self) -> int:
        return sum(len(sent) for sent in self.acknowledged.values())


def read_until(client, channel_of, wanted: dict[str, list[str]], timeout: float = 20):
    """Read ``client`` until it has each channel's last wanted event; return (got per channel, resets)."""
    got: dict[str, list[str]] = {channel: [] for channel in wanted}
    resets = 0
    deadline = time.monotonic() + timeout
    last = {channel: sent[-1] for channel, sent in wanted.items() if sent}
    while any(not got[c] or got[c][-1] != last[c] for c in last):
        [event] = client.read_events(1, timeout=max(0.01, deadline - time.monotonic()))
        if event.type == RESET:
            resets += 1
        elif event.type == "tick":
            got[channel_of(event.data)].append(event.data)
    return got, resets


def check_delivery(name: str, got, resets: int, acknowledged) -> int:
    """Assert no duplicate, order kept, and no loss without a reset; return the events lost."""
    lost = 0
    for channel, sent in acknowledged.items():
        received = got[channel]
        assert len(received) == len(set(received)), f"{name}: duplicates on {channel}"
        assert received == [d for d in sent if d in set(received)], f"{name}: order on {channel}"
        missing = [d for d in sent if d not in set(received)]
        lost += len(missing)
        assert not missing or resets, f"{name}: {len(missing)} events of {channel} lost silently"
    return lost


def retained(cluster: RedisClusterServers, channel: str) -> set[str]:
    """Return the data of every event the channel's history holds now (on its slot's master)."""
    key = f"sse:{{{channel}}}"
    with cluster.owner_of(_keyslot(key)).client() as owner:
        return {fields[b"data"].decode() for _, fields in owner.xrange(key)}


def check_failover_delivery(name: str, got, resets: int, acknowledged, gone) -> int:
    """Assert no duplicate, order kept, every retained event received unless reset, a reset only
    for a channel whose history lost events; return how many acknowledged events were not received."""
    not_received = 0
    for channel, sent in acknowledged.items():
        received = got[channel]
        assert len(received) == len(set(received)), f"{name}: duplicates on {channel}"
        assert received == [d for d in sent if d in set(received)], f"{name}: order on {channel}"
        missing = {d for d in sent if d not in set(received)}
        not_received += len(missing)
        if not resets:
            assert missing <= gone[channel], f"{name}: retained events of {channel} skipped"
    if resets:
        assert any(gone[channel] for channel in acknowledged), f"{name}: a reset, nothing lost"
    return not_received


def test_a_slot_migrated_under_steady_publishing_loses_nothing(on_cluster, site):
    """MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE: the subscription follows its slot; no gap."""
    cluster = on_cluster
    moving, staying, _ = channels_on(cluster, "mig")
    slot = _keyslot(f"sse:{{{moving}}}")
    source = cluster.owner_of(slot)
    target = next(m for m in cluster.masters if m is not source and m.running)
    clients = {
        "one channel": open_live(site.port, f"/events/{moving}/"),
        "two channels": open_live(site.port, multi_path(moving, staying)),
    }
    try:
        with Publisher([moving, staying]) as publisher:
            eventually(publisher.count, until=lambda n: n >= 20, what="publishing under way")
            started = time.monotonic()
            keys = cluster.migrate_slot(slot, target)
            migrated = time.monotonic() - started
            cluster.wait_ok()
            assert cluster.owner_of(slot) is target
            eventually(
                lambda: (shard_subscribers(target, [moving]), shard_subscribers(source, [moving])),
                until=lambda counts: (
                    list(counts[0].values()) == [1] == [1 - n for n in counts[1].values()]
                ),
                what="the subscription on the new owner, none on the old",
            )
            followed = time.monotonic() - started
            time.sleep(0.3)  # publish on past the move, for the check
        sent = publisher.acknowledged
        results = {}
        for name, client in clients.items():
            wanted = {c: sent[c] for c in ([moving] if name == "one channel" else sent)}
            got, resets = read_until(client, lambda d: d.rsplit(":", 1)[0], wanted)
            results[name] = (check_delivery(name, got, resets, wanted), resets)
    finally:
        for client in clients.values():
            client.close()
    print(
        f"slot {slot} moved {source.port}->{target.port} ({keys} key) in {migrated:.2f}s; "
        f"subscription on the new owner after {followed:.2f}s; published "
        f"{publisher.count()} (refused {publisher.refused}); per stream (lost, resets): {results}"
    )
    assert all(lost == 0 and resets == 0 for lost, resets in results.values())
    after = eventually(
        lambda: subscriber_connections(cluster),
        until=lambda counts: all(count <= 1 for count in counts.values()),
        what="at most one subscriber connection per node",
    )
    print("subscriber connections per node after the move:", after)


# --- 3. a replica takes over a killed master (last: the cluster keeps a dead node) ----------------


def test_a_killed_master_s_replica_takes_over_and_streams_go_on(on_cluster, site):
    """SIGKILL a master: send_event fails during the switch, then works; streams get every acknowledged event or a reset."""
    cluster = on_cluster
    masters = [m for m in cluster.masters if m.running]
    victim_channel, other_channel = channels_on(cluster, "fo", masters[:2])
    victim: RedisServer = cluster.owner_of(_keyslot(f"sse:{{{victim_channel}}}"))
    clients = {
        "victim's channel": open_live(site.port, f"/events/{victim_channel}/"),
        "other channel": open_live(site.port, f"/events/{other_channel}/"),
        "both": open_live(site.port, multi_path(victim_channel, other_channel)),
    }
    wanted_of = {
        "victim's channel": [victim_channel],
        "other channel": [other_channel],
        "both": [victim_channel, other_channel],
    }
    try:
        with Publisher([victim_channel, other_channel], interval=0.02) as publisher:
            eventually(publisher.count, until=lambda n: n >= 20, what="publishing under way")
            killed_at = time.monotonic()
            victim.kill()
            eventually(
                lambda: publisher.last_refusal,
                timeout=10,
                interval=0.01,
                what="send_event refused during the switch",
            )
            before = len(publisher.acknowledged[victim_channel])
            eventually(
                lambda: len(publisher.acknowledged[victim_channel]),
                timeout=30,
                until=lambda n: n > before,
                what="send_event working again",
            )
            publishing_again = time.monotonic() - killed_at
            # Live again: an event published now reaches the victim channel's stream.
            client = clients["victim's channel"]
            marker = f"{victim_channel}:live-again"
            while True:
                django_sse.send_event("probe", marker, channel=victim_channel)
                try:
                    client.read_bytes_until(lambda body: marker.encode() in body, timeout=0.5)
                    break
                except TimeoutError:
                    assert time.monotonic() - killed_at < 30, "not resubscribed within 30 s"
            resubscribed = time.monotonic() - killed_at
            time.sleep(0.3)
        sent = publisher.acknowledged
        # Acknowledged by the old master but not replicated before it died: gone from history.
        gone = {channel: set(sent[channel]) - retained(cluster, channel) for channel in sent}
        results = {}
        for name, client in clients.items():
            wanted = {c: sent[c] for c in wanted_of[name]}
            got, resets = read_until(client, lambda d: d.rsplit(":", 1)[0], wanted)
            results[name] = (check_failover_delivery(name, got, resets, wanted, gone), resets)
            assert not client.ended
        after = eventually(
            lambda: subscriber_connections(cluster),
            until=lambda counts: all(count <= 1 for count in counts.values()),
            what="at most one subscriber connection per node",
        )
    finally:
        for client in clients.values():
            client.close()
    print(
        f"killed master {victim.port}: send_event refused {publisher.refused} time(s) for "
        f"{publisher.last_refusal - publisher.first_refusal:.2f}s, working again after "
        f"{publishing_again:.2f}s; stream live again after {resubscribed:.2f}s; "
        f"published {publisher.count()}; lost with the master (not replicated): "
        f"{ {c: len(g) for c, g in gone.items()} }; per stream (events not received, resets): "
        f"{results}"
    )
    print("subscriber connections per running node after the promotion:", after)
    assert results["other channel"] == (0, 0)


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/redis-cluster.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
