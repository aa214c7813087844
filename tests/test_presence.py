"""Presence (``django_sse.presence``) and ``manage.py sse_status``: units, then two gunicorns on one Redis.

The unit tests build reports by hand and add them up, run the reporter
against the in-process broker and a real redis-server, and count what one
report costs Redis. The integration tests start two sites (one gunicorn
worker each, ``SSE_PRESENCE_INTERVAL`` 0.3 s) on the same Redis, open
streams with and without an owner on both, and read the presence from the
test process, as any other process of the site would.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_sse
from django_sse.brokers.memory import MemoryBroker
from django_sse.brokers.redis.broker import RedisBroker
from django_sse.core import runtime
from django_sse.core.hub import Hub
from django_sse.core.mailbox import Mailbox
from django_sse.exceptions import BrokerUnavailable, InvalidChannel
from django_sse.presence import (
    EXPIRY_INTERVALS,
    Presence,
    PresenceReporter,
    ProcessReport,
    busiest_channels,
    decode_reports,
    presence_of,
    read_reports,
)
from django_sse.testing import memory_broker
from tests.support.redis_helpers import eventually, open_live
from tests.support.servers import free_port

INTERVAL = 0.3  # the servers' SSE_PRESENCE_INTERVAL
EXPIRY = INTERVAL * EXPIRY_INTERVALS


def report(pid: int, channels: dict[str, tuple[int, set[str]]], host: str = "web-1", **kwargs):
    fields = {"started": 1_700_000_000.0, "reported": 1_700_000_100.0, "broker_connected": True}
    fields.update(kwargs)
    fields.setdefault("streams", sum(streams for streams, _ in channels.values()))
    return ProcessReport(
        host=host,
        pid=pid,
        channels={name: Presence(n, frozenset(users)) for name, (n, users) in channels.items()},
        **fields,
    )


def presence_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "django-sse-presence" and t.is_alive()]


# --- units: reports and how they add up ------------------------------------------


def test_a_report_survives_its_json_and_a_foreign_one_is_skipped(caplog):
    """encode()/decode() round-trip every field; malformed or other-version reports are dropped, logged."""
    original = report(41, {"room": (3, {"1", "2"}), "news": (1, set())}, broker_connected=False)
    foreign = json.dumps({**json.loads(original.encode()), "v": 2})

    with caplog.at_level(logging.ERROR, logger="django_sse.presence"):
        decoded = decode_reports([original.encode(), "not json", '{"v": 1}', foreign])

    assert decoded == [original]
    assert decoded[0].key == "web-1:41"
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 3


def test_presence_adds_up_the_streams_and_unites_the_users_of_every_process():
    """Streams are summed over processes; a user with streams on two processes is one user."""
    reports = [
        report(1, {"room": (2, {"alice"}), "news": (5, set())}),
        report(2, {"room": (3, {"alice", "bob"})}, host="web-2"),
        report(3, {}),
    ]

    assert presence_of(reports, "room") == Presence(5, frozenset({"alice", "bob"}))
    assert presence_of(reports, "news") == Presence(5, frozenset())
    assert presence_of(reports, "nobody") == Presence(0, frozenset())


def test_the_busiest_channels_are_the_ten_with_most_streams_ties_by_name():
    """busiest_channels() sorts by total streams, most first, then by name, and keeps ``limit``."""
    reports = [
        report(1, {f"c{i:02}": (i, set()) for i in range(1, 13)}),
        report(2, {"c01": (20, {"u"}), "c05": (7, set())}),
    ]

    top = busiest_channels(reports)

    assert [(name, p.streams) for name, p in top] == [
        ("c01", 21),
        ("c05", 12),
        ("c12", 12),
        ("c11", 11),
        ("c10", 10),
        ("c09", 9),
        ("c08", 8),
        ("c07", 7),
        ("c06", 6),
        ("c04", 4),
    ]
    assert top[0][1].users == frozenset({"u"})


def test_the_hub_reports_each_channels_streams_and_their_owners():
    """Hub.presence(): per channel, the number of local listeners and the owners among them."""
    hub = Hub(MemoryBroker(maxlen=10, ttl=0))
    alice, alice_again, anonymous = Mailbox(5, owner="1"), Mailbox(5, owner="1"), Mailbox(5)
    hub.attach(alice, ["room", "news"])
    hub.attach(alice_again, ["room"])
    hub.attach(anonymous, ["news"])
    before = hub.presence()
    hub.detach(alice, ["room", "news"])

    assert before == {"room": (2, frozenset({"1"})), "news": (2, frozenset({"1"}))}
    assert hub.presence() == {"room": (1, frozenset({"1"})), "news": (1, frozenset())}


class CountingHub(Hub):
    """A hub that counts the walks of its channels (``presence()``)."""

    walks = 0

    def presence(self):
        self.walks += 1
        return super().presence()


def test_a_report_walks_the_channels_again_only_after_a_stream_came_or_went():
    """Reports in a row reuse the channels' JSON; an attach or a detach is in the next report."""
    broker = MemoryBroker(maxlen=10, ttl=0)
    hub = CountingHub(broker)
    reporter = PresenceReporter(hub, open_streams=lambda: 1, interval=3600)
    try:
        reader = Mailbox(5, owner="4")
        hub.attach(reader, ["room"])
        reporter.report()
        walks = hub.walks
        reporter.report()
        reporter.report()
        unchanged = hub.walks - walks
        [first] = decode_reports(broker.read_presence())
        hub.attach(Mailbox(5), ["news"])
        reporter.report()
        [after_attach] = decode_reports(broker.read_presence())
        hub.detach(reader, ["room"])
        reporter.report()
        [after_detach] = decode_reports(broker.read_presence())
    finally:
        reporter.stop()
        hub.close()

    assert unchanged == 0
    assert first.channels == {"room": Presence(1, frozenset({"4"}))}
    assert after_attach.channels == {
        "room": Presence(1, frozenset({"4"})),
        "news": Presence(1, frozenset()),
    }
    assert after_detach.channels == {"news": Presence(1, frozenset())}
    assert after_detach.streams == 1 and after_detach.pid == os.getpid()


# --- units: channel_presence in this process -------------------------------------


def test_channel_presence_with_the_memory_broker_counts_this_processs_streams():
    """The in-process broker answers for its own process, at once (its report is written afresh)."""
    with memory_broker():
        hub = runtime.get_hub()
        owner, anonymous = Mailbox(5, owner="7"), Mailbox(5)
        hub.attach(owner, ["room"])
        hub.attach(anonymous, ["room"])
        both = django_sse.channel_presence("room")
        hub.detach(owner, ["room"])
        one = django_sse.channel_presence("room")
        [process] = decode_reports(runtime.get_broker().read_presence())
        hub.detach(anonymous, ["room"])

    assert both == Presence(2, frozenset({"7"}))
    assert one == Presence(1, frozenset())
    assert (process.pid, process.broker_connected) == (os.getpid(), True)


def test_achannel_presence_awaits_the_same_answer():
    """achannel_presence() is channel_presence() for async code."""
    import asyncio

    with memory_broker():
        hub = runtime.get_hub()
        reader = Mailbox(5, owner="9")
        hub.attach(reader, ["room"])
        try:
            result = asyncio.run(django_sse.achannel_presence("room"))
        finally:
            hub.detach(reader, ["room"])

    assert result == Presence(1, frozenset({"9"}))


@pytest.mark.parametrize("channel", ["", "two words", "x" * 201, 42])
def test_a_bad_channel_name_is_refused_before_the_broker_is_asked(settings, channel):
    """InvalidChannel, not BrokerUnavailable, although the configured Redis is unreachable."""
    settings.SSE_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(InvalidChannel):
        django_sse.channel_presence(channel)
    with pytest.raises(BrokerUnavailable):  # what a valid name meets
        django_sse.channel_presence("room")


def test_the_reporters_task_is_gone_after_runtime_reset():
    """Each hub starts one reporter task; reset() (also a setting change) stops it: none is left."""
    with memory_broker():
        before = len(presence_threads())
        runtime.get_hub()
        started = len(presence_threads())
        runtime.reset()
        after_reset = len(presence_threads())
        for _ in range(3):
            runtime.get_hub()
            runtime.reset()
        runtime.get_hub()
    after_setting_change = len(presence_threads())  # leaving memory_broker() resets the runtime

    assert (started, after_reset, after_setting_change) == (before + 1, before, before)
    assert runtime.presence_reporter() is None


# --- units: the Redis broker ----------------------------------------------------


def test_redis_keeps_each_report_for_its_ttl_and_forgets_expired_members(redis_url, redis_server):
    """read_presence() returns unexpired reports and removes the index members whose report expired."""
    broker = RedisBroker(redis_url, prefix="sse:", timeout=2, maxlen=100, ttl=0)
    admin = redis_server.client()
    try:
        broker.write_presence("web-1:1", "one", ttl=60)
        broker.write_presence("web-2:2", "two", ttl=60)
        both = sorted(broker.read_presence())
        # Its last report, kept for 0.2 s (as Redis's own TTL reading says), then expired.
        broker.write_presence("web-2:2", "two", ttl=0.2)
        kept_for = admin.pttl("sse:django-sse presence web-2:2")
        kept_long = admin.pttl("sse:django-sse presence web-1:1")
        left = eventually(
            broker.read_presence, until=lambda reports: reports == ["one"], what="one expired"
        )
        members = admin.zrange("sse:django-sse presence", 0, -1)
        broker.write_presence("web-1:1", "one again", ttl=60)
        replaced = broker.read_presence()
    finally:
        broker.close()

    assert both == ["one", "two"]
    assert 0 < kept_long <= 60_000 and kept_for <= 200  # in ms; -2 once expired
    assert left == ["one"]
    assert members == [b"web-1:1"]
    assert replaced == ["one again"]


def test_a_channel_named_like_the_presence_keys_does_not_collide(redis_url):
    """A channel called "presence" or "django-sse" keeps its stream; presence keys hold a space."""
    broker = RedisBroker(redis_url, prefix="sse:", timeout=2, maxlen=100, ttl=0)
    try:
        broker.write_presence("web-1:1", "report", ttl=60)
        ids = [broker.publish(name, "e", "d", True) for name in ("presence", "django-sse")]
        reports = broker.read_presence()
        tips = [broker.read_history(name, None, 0).tip for name in ("presence", "django-sse")]
    finally:
        broker.close()

    assert None not in ids and reports == ["report"]
    assert all(tip != (0, 0) for tip in tips)


def test_a_report_costs_redis_one_transaction_however_many_streams_the_process_has(
    redis_url, redis_server
):
    """Reporting 1 stream or 300 sends the same commands: SET, ZADD, ZREMRANGEBYSCORE, PEXPIRE in MULTI."""
    admin = redis_server.client()

    def commands_of_one_report(streams: int) -> dict[str, int]:
        hub = Hub(MemoryBroker(maxlen=10, ttl=0))
        for i in range(streams):
            hub.attach(Mailbox(5, owner=str(i % 50)), [f"channel-{i % 30}", "all"])
        broker = RedisBroker(redis_url, prefix="sse:", timeout=2, maxlen=100, ttl=0)
        # The hub's streams, reported to Redis (a hub of the Redis broker would also subscribe).
        on_redis = SimpleNamespace(broker=broker, presence=hub.presence, membership=hub.membership)
        reporter = PresenceReporter(on_redis, lambda: streams, interval=60)
        try:
            eventually(broker.read_presence, what="the report the reporter writes as it starts")
            admin.config_resetstat()
            reporter.report()
            stats = admin.info("commandstats")
        finally:
            reporter.stop()
            broker.close()
        return {
            name.removeprefix("cmdstat_"): values["calls"]
            for name, values in stats.items()
            if not name.startswith(("cmdstat_config", "cmdstat_info"))
        }

    one, many = commands_of_one_report(1), commands_of_one_report(300)

    expected = {"multi": 1, "set": 1, "zadd": 1, "zremrangebyscore": 1, "pexpire": 1, "exec": 1}
    assert (one, many) == (expected, expected)


@pytest.mark.integration
def test_a_redis_outage_is_logged_once_and_reporting_resumes(servers, caplog, monkeypatch):
    """The reporter logs one WARNING while Redis is down, one INFO when it is back, and reports again."""

    def reported(level: int) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "django_sse.presence" and r.levelno == level]

    redis = servers.redis()
    broker = RedisBroker(redis.url, prefix="sse:", timeout=0.5, maxlen=100, ttl=0)
    hub = Hub(broker)
    hub.attach(Mailbox(5, owner="1"), ["room"])
    failed: list[BrokerUnavailable] = []
    write = broker.write_presence

    def counting_write(*args, **kwargs):
        try:
            return write(*args, **kwargs)
        except BrokerUnavailable as exc:
            failed.append(exc)
            raise

    monkeypatch.setattr(broker, "write_presence", counting_write)
    with caplog.at_level(logging.INFO, logger="django_sse.presence"):
        reporter = PresenceReporter(hub, lambda: 1, interval=0.1)
        try:
            eventually(broker.read_presence, what="a first report")
            redis.stop()
            eventually(lambda: reported(logging.WARNING), what="the outage's warning")
            eventually(lambda: len(failed) >= 3, what="several failed intervals")
            redis.start()
            eventually(lambda: reported(logging.INFO), what="the recovery's line")
            [text] = eventually(broker.read_presence, what="a report after the outage")
        finally:
            reporter.stop()
            broker.close()

    records = [r for r in caplog.records if r.name == "django_sse.presence"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    assert ProcessReport.decode(text).channels == {"room": Presence(1, frozenset({"1"}))}
    assert not reporter.alive


# --- integration: two gunicorn servers on one Redis -------------------------------


@pytest.fixture
def two_sites(servers, redis_url, settings):
    """Two sites of one gunicorn worker each on the same Redis; this process reads that Redis too."""
    site_settings = {"SSE_PRESENCE_INTERVAL": INTERVAL}
    first = servers.site(redis_url, heartbeat="1", settings=site_settings)
    second = servers.site(redis_url, heartbeat="1", settings=site_settings)
    settings.SSE_REDIS_URL = redis_url
    return first, second


def owned(site, channel: str, owner: str | None = None):
    query = f"?owner={owner}" if owner else ""
    return open_live(site.port, f"/owned-events/{channel}/{query}")


def presence_is(channel: str, expected: Presence, timeout: float = 15) -> Presence:
    return eventually(
        lambda: django_sse.channel_presence(channel),
        timeout,
        until=lambda found: found == expected,
        what=f"presence {expected} on {channel!r}",
    )


@pytest.mark.integration
def test_presence_counts_streams_and_users_on_two_servers_and_forgets_a_killed_worker(two_sites):
    """Counts and owners appear, follow disconnects, and a SIGKILLed worker's streams expire."""
    first, second = two_sites
    clients = {
        "alice@1": owned(first, "room", "alice"),
        "anon@1": owned(first, "room"),
        "bob@2": owned(second, "room", "bob"),
        "alice@2": owned(second, "room", "alice"),
        "anon@2": owned(second, "lobby"),
    }
    try:
        presence_is("room", Presence(4, frozenset({"alice", "bob"})))
        presence_is("lobby", Presence(1, frozenset()))
        pids = {report.pid for report in read_reports()}
        assert pids == {*first.worker_pids(), *second.worker_pids()}

        clients.pop("alice@2").close()  # alice still has a stream on the first server
        presence_is("room", Presence(3, frozenset({"alice", "bob"})))
        clients.pop("alice@1").close()
        presence_is("room", Presence(2, frozenset({"bob"})))

        # A crash: nothing detaches, nothing reports again; the report expires.
        [killed] = second.worker_pids()
        os.kill(killed, signal.SIGKILL)
        presence_is("room", Presence(1, frozenset()), timeout=EXPIRY + 10)
        presence_is("lobby", Presence(0, frozenset()), timeout=EXPIRY + 10)
        assert killed not in {report.pid for report in read_reports()}
    finally:
        for client in clients.values():
            client.close()


@pytest.mark.integration
def test_sse_status_shows_both_servers_the_busiest_channels_and_a_channels_presence(two_sites):
    """sse_status, text and --json: one row per worker, channels by streams, presence of CHANNEL."""
    first, second = two_sites
    clients = [
        owned(first, "room", "alice"),
        owned(first, "room"),
        owned(first, "lobby", "carol"),
        owned(second, "room", "bob"),
    ]
    try:
        presence_is("room", Presence(3, frozenset({"alice", "bob"})))
        presence_is("lobby", Presence(1, frozenset({"carol"})))
        # A process's first report may precede its subscription: wait for the reports after it.
        eventually(
            read_reports,
            15,
            until=lambda reports: (
                len(reports) == 2 and all(report.broker_connected for report in reports)
            ),
            what="both processes reporting their broker connected",
        )
        text, as_json = io.StringIO(), io.StringIO()
        call_command("sse_status", "room", stdout=text)
        call_command("sse_status", "room", "--json", stdout=as_json)
    finally:
        for client in clients:
            client.close()

    [first_pid], [second_pid] = first.worker_pids(), second.worker_pids()
    status = json.loads(as_json.getvalue())
    processes = {p["pid"]: p for p in status["processes"]}
    assert set(processes) == {first_pid, second_pid}
    assert (processes[first_pid]["streams"], processes[first_pid]["channels"]) == (3, 2)
    assert (processes[second_pid]["streams"], processes[second_pid]["channels"]) == (1, 1)
    assert {p["broker"] for p in processes.values()} == {"connected"}
    assert status["busiest_channels"] == [
        {"channel": "room", "streams": 3, "users": 2},
        {"channel": "lobby", "streams": 1, "users": 1},
    ]
    assert status["presence"] == {"channel": "room", "streams": 3, "users": ["alice", "bob"]}

    lines = text.getvalue().splitlines()
    assert lines[0] == "Processes serving streams: 2 (4 streams)"
    rows = {int(line.split()[1]): line.split() for line in lines[2:4]}
    assert rows[first_pid][2:5] == ["3", "2", "connected"]
    assert rows[second_pid][2:5] == ["1", "1", "connected"]
    assert lines[lines.index("Busiest channels (top 10):") + 2].split() == ["room", "3", "2"]
    assert lines[-1] == "Presence on 'room': 3 streams, 2 users: alice, bob"


def test_sse_status_with_the_memory_broker_says_to_set_sse_redis_url():
    """The command runs in its own process: the in-process broker sees nothing there."""
    with memory_broker(), pytest.raises(CommandError, match="SSE_REDIS_URL"):
        call_command("sse_status")


def test_sse_status_refuses_a_bad_channel_name(settings):
    """A channel with whitespace fails with the reason, before Redis is asked."""
    settings.SSE_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(CommandError, match="whitespace"):
        call_command("sse_status", "two words")


def test_sse_status_says_when_redis_cannot_be_reached(settings):
    """An unreachable Redis is a CommandError naming it, not a traceback."""
    settings.SSE_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(CommandError, match="Could not read presence from Redis"):
        call_command("sse_status")


def test_sse_status_counts_one_stream_and_one_user_in_the_singular():
    """'1 stream', '1 user': the text report says what it counted."""
    from django_sse.management.commands.sse_status import _text

    status = {
        "processes": [
            {
                "host": "h",
                "pid": 1,
                "streams": 1,
                "channels": 1,
                "broker": "connected",
                "since": "-",
            }
        ],
        "busiest_channels": [],
        "presence": {"channel": "room", "streams": 1, "users": ["alice"]},
    }
    lines = _text(status).splitlines()

    assert lines[0] == "Processes serving streams: 1 (1 stream)"
    assert lines[-1] == "Presence on 'room': 1 stream, 1 user: alice"
