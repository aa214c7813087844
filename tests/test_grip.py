"""GRIP mode: a real Pushpin holds the streams of a plain sync gunicorn.

The site is the test project on ``gunicorn -k sync`` with two workers (no
gevent, no ASGI: each worker answers one request at a time), behind a
Pushpin of its own (``tests/support/pushpin.py``), with ``SSE_GRIP_URL`` set
to Pushpin's control API; redis-server is the broker. ``send_event`` runs in
this process (another process than the site's), as a Celery task or a
management command would. Clients connect to Pushpin only.
"""

from __future__ import annotations

import json
import time

import pytest
from django.core import checks

import django_sse
from django_sse.core.positions import decode_positions, parse_position
from django_sse.grip import instructions, names
from django_sse.grip.checks import check_grip
from tests.support.doc_pages import commands, pages_tested_by
from tests.support.readme_samples import Samples, track
from tests.support.redis_helpers import multi_path, wait_position
from tests.support.servers import free_port, project_env
from tests.support.site import MANAGER, USERS_SETUP, Site, django_command
from tests.support.sse import SseClient

SAMPLES = Samples(*pages_tested_by(__name__))  # docs/guides/grip.rst
grip_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed
ROUTES = SAMPLES.find("text", "/etc/pushpin/routes")
SETTINGS = SAMPLES.find("python", "SSE_GRIP_URL")
COMMAND = SAMPLES.find("console", "gunicorn")


class GripSite(Site):
    """The site behind Pushpin: ``server`` is Pushpin, ``django`` gunicorn, ``proxy_url`` its control API."""

    def __init__(self, proxy, django, redis, env, users, control_url):
        super().__init__(proxy, redis, env, users)
        self.proxy = proxy
        self.django = django
        self.control_url = control_url


def guide_setup() -> tuple[str, int, str]:
    """Return what the guide sets up: ``SSE_GRIP_URL``, gunicorn's workers (sync), the route line."""
    page = {}
    exec(SETTINGS.code, page)  # noqa: S102 (the guide's own settings)
    [(argv, _)] = commands(COMMAND.code)
    assert argv[0] == "gunicorn" and "-k" not in argv and "--worker-class" not in argv  # sync
    [route] = [line for line in ROUTES.code.splitlines() if not line.startswith("#")]
    return page["SSE_GRIP_URL"], int(argv[argv.index("--workers") + 1]), route


@pytest.fixture(scope="module")
def grip_site(module_servers, tmp_path_factory):
    """The guide's setup, on free ports: its settings, its gunicorn command, its routes line."""
    grip_url, workers, route = guide_setup()
    assert grip_url == "http://localhost:5561"  # Pushpin's default control port
    redis = module_servers.redis()
    control_port = free_port()
    control_url = f"http://127.0.0.1:{control_port}"
    env = project_env(
        redis.url,
        heartbeat="1",
        settings={
            "SSE_GRIP_URL": grip_url.replace("localhost:5561", f"127.0.0.1:{control_port}"),
            "SSE_CHANNEL_MANAGER": MANAGER,
            "DEBUG_PROPAGATE_EXCEPTIONS": True,
        },
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGO_SSE_TEST_DB=str(tmp_path_factory.mktemp("grip") / "db.sqlite3"),
    )
    django_command(env, "migrate", "-v", "0")
    users = json.loads(django_command(env, "shell", "-c", USERS_SETUP).strip().splitlines()[-1])
    django = module_servers.gunicorn(env=env, workers=workers, worker_class="sync")
    routes = route.replace("localhost:8000", f"127.0.0.1:{django.port}")
    proxy = module_servers.pushpin(
        routes=routes, control_port=control_port, ready_path="/events/grip-ready/"
    )
    return GripSite(proxy, django, redis, env, users, control_url)


@pytest.fixture
def grip(grip_site):
    """The site of the guide's setup (read again within the test, which counts it as exercised)."""
    assert guide_setup()[1] == grip_site.django.workers
    return grip_site


@pytest.fixture
def publish(grip, settings):
    """``send_event`` of this process: to the site's Redis, and to Pushpin."""
    settings.SSE_REDIS_URL = grip.redis.url
    settings.SSE_GRIP_URL = grip.control_url
    return django_sse.send_event


def _open(grip: GripSite, path: str, user: str | None = None, last_event_id: str | None = None):
    headers = {"Cookie": f"sessionid={grip.users[user]['cookie']}"} if user else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    client = SseClient.connect(grip.proxy.port, path, headers=headers, timeout=15)
    assert client.status == 200, (client.status, client.body[:500])
    return client


def _ticks(client: SseClient, count: int) -> list[tuple[str, str]]:
    return [(e.data, e.last_event_id) for e in client.read_events(count, timeout=15)]


def _quiet(client: SseClient, heartbeats: int = 2) -> list:
    """Wait for ``heartbeats`` more keep-alives (Pushpin sends one a second); return events meanwhile."""
    seen = len(client.parser.comments)
    client.read_bytes_until(lambda _: len(client.parser.comments) >= seen + heartbeats, 15)
    return client.events[client._read_events :]


@pytest.mark.integration
def test_a_sync_gunicorn_behind_pushpin_streams_each_event_once_to_more_clients_than_workers(
    grip, publish
):
    """Three times as many clients as sync workers: each gets every event once, in order, with its id."""
    clients = [_open(grip, "/events/grip-many/") for _ in range(3 * grip.django.workers)]
    for client in clients:
        assert wait_position(client) == "0-0"  # a new client's position: the empty channel's
        assert not any(name.lower().startswith("grip-") for name in client.headers.keys())
    ids = [publish("tick", str(n), channel="grip-many") for n in range(5)]
    for client in clients:
        assert _ticks(client, 5) == [(str(n), ids[n]) for n in range(5)]
    assert _quiet(clients[0]) == []  # nothing twice
    for client in clients:
        client.close()


@pytest.mark.integration
def test_a_client_that_reconnects_through_pushpin_gets_exactly_what_it_missed(grip, publish):
    first = publish("tick", "before", channel="grip-resume")
    client = _open(grip, "/events/grip-resume/")
    wait_position(client)
    seen = publish("tick", "seen", channel="grip-resume")
    assert _ticks(client, 1) == [("seen", seen)]
    client.close()
    missed = [publish("tick", f"missed{n}", channel="grip-resume") for n in range(3)]
    again = _open(grip, "/events/grip-resume/", last_event_id=seen)
    assert _ticks(again, 3) == [(f"missed{n}", missed[n]) for n in range(3)]
    live = publish("tick", "live", channel="grip-resume")
    assert _ticks(again, 1) == [("live", live)]
    assert _quiet(again) == []
    assert first not in {event_id for _, event_id in _ticks_seen(again)}
    again.close()


def _ticks_seen(client: SseClient) -> list[tuple[str, str]]:
    return [(e.data, e.last_event_id) for e in client.events]


@pytest.mark.integration
def test_a_catch_up_larger_than_one_answer_arrives_whole_in_order_once(grip, publish):
    """160 KB missed: the view answers in pages of 64 KiB, held at each page's end, and Pushpin asks on."""
    client = _open(grip, "/events/grip-pages/")
    seen = publish("tick", "seen", channel="grip-pages")
    assert _ticks(client, 1) == [("seen", seen)]
    client.close()
    missed = [publish("tick", f"{n:04d}" + "x" * 4000, channel="grip-pages") for n in range(40)]
    again = _open(grip, "/events/grip-pages/", last_event_id=seen)
    assert [event_id for _, event_id in _ticks(again, 40)] == missed
    live = publish("tick", "live", channel="grip-pages")
    assert _ticks(again, 1) == [("live", live)]
    assert _quiet(again) == []
    again.close()


@pytest.mark.integration
def test_an_event_pushpin_was_never_given_reaches_the_clients_before_the_next_one(
    grip, publish, settings
):
    """Recorded without the proxy (as when it was unreachable), it shows as a gap in the next event's prev-id."""
    client = _open(grip, "/events/grip-gap/")
    wait_position(client)
    settings.SSE_GRIP_URL = None
    lost = publish("tick", "never given to pushpin", channel="grip-gap")
    settings.SSE_GRIP_URL = grip.control_url
    assert _quiet(client, heartbeats=1) == []  # pushpin has nothing to send yet
    after = publish("tick", "next", channel="grip-gap")
    assert _ticks(client, 2) == [("never given to pushpin", lost), ("next", after)]
    assert _quiet(client) == []
    client.close()


@pytest.mark.integration
def test_revocation_ends_the_revoked_users_streams_and_no_others(grip, publish):
    alice = _open(grip, "/events/group-news/", user="alice")
    bob = _open(grip, "/events/group-news/", user="bob")
    alice_public = _open(grip, "/events/grip-public/", user="alice")
    for client in (alice, bob, alice_public):
        wait_position(client)
    django_command(grip.env, "shell", "-c", _REVOKE_ALICE)
    alice.read_to_end(timeout=15)
    # Her other stream ends too (the proxy ends a user's streams), and comes back whole.
    alice_public.read_to_end(timeout=15)
    refused = SseClient.connect(
        grip.proxy.port,
        "/events/group-news/",
        headers={"Cookie": f"sessionid={grip.users['alice']['cookie']}"},
    )
    assert refused.status == 403
    event_id = publish("tick", "for the group", channel="group-news")
    assert _ticks(bob, 1) == [("for the group", event_id)]
    resumed = _open(
        grip, "/events/grip-public/", user="alice", last_event_id=alice_public.parser.last_event_id
    )
    public = publish("tick", "public", channel="grip-public")
    assert _ticks(resumed, 1) == [("public", public)]
    for client in (bob, resumed, refused):
        client.close()


_REVOKE_ALICE = """
from django.contrib.auth.models import Group, User
from django_sse import channel_permission_changed

alice = User.objects.get(username="alice")
alice.groups.remove(Group.objects.get(name="news"))
channel_permission_changed(alice, "group-news")
"""


@pytest.mark.integration
def test_pushpin_restarted_mid_stream_loses_nothing_a_client_can_notice(grip, publish):
    client = _open(grip, "/events/grip-restart/")
    wait_position(client)
    before = publish("tick", "before", channel="grip-restart")
    assert _ticks(client, 1) == [("before", before)]
    grip.proxy.stop()
    client.read_to_end(timeout=15)  # the connection is gone with the proxy
    during = publish("tick", "while pushpin was down", channel="grip-restart")  # logged, not raised
    grip.proxy.start()
    again = _open(grip, "/events/grip-restart/", last_event_id=client.parser.last_event_id)
    assert _ticks(again, 1) == [("while pushpin was down", during)]
    after = publish("tick", "after", channel="grip-restart")
    assert _ticks(again, 1) == [("after", after)]
    assert _quiet(again) == []
    again.close()


@pytest.mark.integration
def test_a_stream_of_several_channels_gets_each_channels_events_once_with_tagged_ids(grip, publish):
    client = _open(grip, multi_path("grip-a", "grip-b"))
    wait_position(client)
    a = publish("tick", "a", channel="grip-a")
    b = publish("tick", "b", channel="grip-b")
    events = client.read_events(2, timeout=15)
    assert [e.data for e in events] == ["a", "b"]
    # Each event carries its own channel's position (the proxy sends every holder the same bytes).
    channels = ["grip-a", "grip-b"]
    assert decode_positions(events[0].last_event_id, channels) == {"grip-a": parse_position(a)}
    assert decode_positions(events[1].last_event_id, channels) == {"grip-b": parse_position(b)}
    assert _quiet(client) == []
    client.close()


@pytest.mark.integration
def test_the_proxys_link_is_refused_with_a_forged_or_altered_grant_and_a_malformed_grip_last(grip):
    """Asked directly (as only the proxy should), the view checks the grant's signature first."""
    port = grip.django.port
    forged = SseClient.connect(port, "/events/grip-x/?sse-grip=forged")
    forged.read_to_end()
    assert (forged.status, forged.body) == (
        403,
        b"The GRIP link's grant is not valid (altered, or expired).\n",
    )
    # A grant for another channel does not open this one's history either.
    plain = SseClient.connect(port, "/events/grip-x/")
    link = plain.headers["Grip-Link"]
    plain.read_to_end()
    token = link.split("sse-grip=")[1].split("&")[0].split(">")[0]
    altered = SseClient.connect(port, f"/events/grip-x/?sse-grip={token[:-2]}xx")
    altered.read_to_end()
    assert altered.status == 403
    malformed = SseClient.connect(
        port, f"/events/grip-x/?sse-grip={token}", headers={"Grip-Last": "sse.1.grip-x"}
    )
    malformed.read_to_end()
    assert (malformed.status, malformed.body) == (400, b"The Grip-Last header is malformed.\n")


def test_a_grant_names_only_the_channels_it_was_made_for_and_expires():
    grant = instructions.Grant(("news", "user-7"), "7")
    token = instructions.sign_grant(grant)
    assert instructions.read_grant(token, max_age=60) == grant
    assert instructions.read_grant(token + "x", max_age=60) is None
    time.sleep(1.1)
    assert instructions.read_grant(token, max_age=1) is None


def test_proxy_channel_names_keep_safe_names_and_hash_the_rest():
    assert names.stream_channel("news", several=False) == "sse.1.news"
    assert names.stream_channel("news", several=True) == "sse.n.news"
    hashed = names.stream_channel("News; a,b", several=False)
    assert hashed.startswith("sse.1.~") and "," not in hashed and ";" not in hashed
    assert hashed != names.stream_channel("news; a,b", several=False)
    assert names.user_channel("7") != names.user_channel("8")


def test_grip_last_is_read_with_djangos_header_parser():
    value = "sse.n.a; last-id=1-0, sse.n.b; last-id=2-3"
    assert instructions.parse_grip_last(value) == {"sse.n.a": "1-0", "sse.n.b": "2-3"}
    assert instructions.parse_grip_last("sse.n.a") is None
    assert instructions.parse_grip_last("") is None


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("SSE_GRIP_URL", "localhost:5561", "django_sse.E055"),
        ("SSE_GRIP_URL", "http://localhost:5561/?key=x", "django_sse.E055"),
        ("SSE_GRIP_PUBLISH_HEADERS", {"Authorization": 1}, "django_sse.E056"),
        ("SSE_GRIP_PUBLISH_HEADERS", "Bearer x", "django_sse.E056"),
    ],
)
def test_a_wrong_grip_setting_is_an_error_naming_it(settings, setting, value, error):
    setattr(settings, setting, value)
    [message] = check_grip()
    assert (message.id, message.level) == (error, checks.ERROR)
    assert setting in message.msg and "Set " in message.hint


def test_grip_mode_needs_a_broker_that_gives_the_id_before_each_event(settings, monkeypatch):
    from django_sse.brokers.base import Broker
    from django_sse.brokers.memory import MemoryBroker

    settings.SSE_GRIP_URL = "http://localhost:5561"
    assert check_grip() == []  # the memory broker can tell
    monkeypatch.setattr(MemoryBroker, "publish_in_sequence", Broker.publish_in_sequence)
    [message] = check_grip()
    assert message.id == "django_sse.E058" and "prev-id" in message.msg


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/grip.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
