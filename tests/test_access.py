"""Access control: the channel manager, ``channel_permission_changed`` across processes, CORS.

The streaming tests run a real site: a file SQLite database (migrated, users
logged in through the test client, whose session cookie the raw clients
send), redis-server, and gunicorn with two gevent workers (and uvicorn with two workers) using
``tests.channel_manager.UserChannels``. Permissions are revoked from another
process (``python -m django shell``), as an admin action or a Celery task
would. The CORS tests need no server: Django's test client shows the headers.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

import django_sse
from tests.support.redis_helpers import data_of, open_live, wait_live
from tests.support.servers import project_env
from tests.support.site import MANAGER, REVOKE_ALICE_FROM_NEWS, USERS_SETUP, Site, django_command
from tests.support.sse import SseClient, streams_on_every_worker

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def site(module_servers, tmp_path_factory, server_kind):
    """Migrated file database with alice and bob in group "news", Redis, 2 workers (gunicorn or uvicorn)."""
    redis = module_servers.redis()
    env = project_env(
        redis.url,
        heartbeat="0.5",
        settings={
            "SSE_CHANNEL_MANAGER": MANAGER,
            "DEBUG_PROPAGATE_EXCEPTIONS": True,  # a 500's traceback in the server's log
        },
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGO_SSE_TEST_DB=str(tmp_path_factory.mktemp("site") / "db.sqlite3"),
    )
    django_command(env, "migrate", "-v", "0")
    users = json.loads(django_command(env, "shell", "-c", USERS_SETUP).strip().splitlines()[-1])
    return Site(module_servers.http(server_kind, env=env, workers=2), redis, env, users)


@pytest.fixture
def publish(site, settings):
    """``send_event`` of this process, to the site's Redis."""
    settings.SSE_REDIS_URL = site.redis.url
    return django_sse.send_event


# --- the channel manager -------------------------------------------------------------


@pytest.mark.integration
def test_a_user_channel_is_refused_to_anonymous_and_other_users_and_streams_to_its_owner(
    site, publish
):
    """``user-<alice's id>``: 403 without a session and for bob; alice's stream gets its events."""
    channel = site.channel("alice")
    anonymous = site.refusal(f"/events/{channel}/")
    other = site.refusal(f"/events/{channel}/", "bob")
    owner = open_live(
        site.server.port,
        f"/events/{channel}/",
        headers={"Cookie": f"sessionid={site.users['alice']['cookie']}"},
    )
    try:
        publish("note", "for alice", channel=channel)
        received = data_of(owner, 1)
    finally:
        owner.close()

    for refused in (anonymous, other):
        assert refused.status == 403
        assert refused.body == f"You may not read the channel {channel!r}.\n".encode()
    assert received == ["for alice"]


@pytest.mark.integration
def test_me_streams_the_requesting_users_own_channel_chosen_by_get_channels_for_request(
    site, publish
):
    """/events/me/: the manager picks ``user-<id>`` of whoever asks; anonymous gets 403."""
    anonymous = site.refusal("/events/me/")
    alice = site.connect("/events/me/", "alice")
    bob = site.connect("/events/me/", "bob")
    try:
        for client in (alice, bob):
            wait_live(client)
        publish("note", "for bob", channel=site.channel("bob"))
        publish("note", "for alice", channel=site.channel("alice"))
        got = (data_of(alice, 1), data_of(bob, 1))
    finally:
        alice.close()
        bob.close()

    assert anonymous.status == 403
    assert b"'user-anonymous'" in anonymous.body
    assert got == (["for alice"], ["for bob"])


@pytest.mark.integration
def test_channel_permission_changed_in_another_process_closes_the_users_streams_on_every_worker(
    site, publish
):
    """Revoked from a shell: alice's group-news streams on both workers end within 1 s; bob's go on."""

    def streams_on_both_workers(user: str) -> list[SseClient]:
        return streams_on_every_worker(
            lambda: site.connect("/worker-events/group-news/", user), workers=2, at_least=3
        )

    alice_news = streams_on_both_workers("alice")
    bob_news = streams_on_both_workers("bob")
    alice_own = site.connect("/events/me/", "alice")
    clients = [*alice_news, *bob_news, alice_own]
    try:
        for client in clients:
            wait_live(client)
        django_command(site.env, "shell", "-c", REVOKE_ALICE_FROM_NEWS)
        deadline = time.monotonic() + 1.0  # the publish happened before the shell exited
        for client in alice_news:
            client.read_to_end(timeout=max(0.01, deadline - time.monotonic()))
        ended_by = time.monotonic()
        publish("news", "after the revocation", channel="group-news")
        publish("note", "still yours", channel=site.channel("alice"))
        bob_got = [data_of(client, 1, event="news") for client in bob_news]
        alice_own_got = data_of(alice_own, 1)
        again = site.refusal("/worker-events/group-news/", "alice")
    finally:
        for client in clients:
            client.close()

    print(
        f"alice's {len(alice_news)} streams on 2 workers ended "
        f"{1.0 - (deadline - ended_by):.2f} s after the revoking process exited"
    )
    assert all(client.ended and not client.reset for client in alice_news)
    assert all(client.body.endswith(b"retry: 2000\n\n") for client in alice_news)
    assert all(b"after the revocation" not in client.body for client in alice_news)
    assert bob_got == [["after the revocation"]] * len(bob_news)
    assert not any(client.ended for client in bob_news)
    assert alice_own_got == ["still yours"]
    assert again.status == 403


REVOKE_ALICE_FROM_NEWS_STAFF = """
from django.contrib.auth.models import Group, User
from django_sse import channel_permission_changed

alice = User.objects.get(username="alice")
alice.groups.remove(Group.objects.get(name="staff"))
channel_permission_changed(alice, "staff-room")
"""


@pytest.mark.integration
def test_an_async_can_read_channel_awaiting_request_auser_decides_at_open_and_on_recheck(
    site, publish
):
    """``async def can_read_channel`` (``await request.auser()``): carol and anonymous get 403; revoked, alice's stream ends, bob's goes on."""
    path = "/async-staff/staff-room/"
    anonymous = site.refusal(path)
    carol = site.refusal(path, "carol")
    alice = site.connect(path, "alice")
    bob = site.connect(path, "bob")
    try:
        for client in (alice, bob):
            assert client.status == 200, client.body
            wait_live(client)
        django_command(site.env, "shell", "-c", REVOKE_ALICE_FROM_NEWS_STAFF)
        alice.read_to_end(timeout=5)
        publish("note", "staff only", channel="staff-room")
        bob_got = data_of(bob, 1)
        again = site.refusal(path, "alice")
    finally:
        alice.close()
        bob.close()

    assert (anonymous.status, carol.status, again.status) == (403, 403, 403)
    assert carol.body == b"You may not read the channel 'staff-room'.\n"
    assert alice.ended and alice.body.endswith(b"retry: 2000\n\n")
    assert b"staff only" not in alice.body
    assert bob_got == ["staff only"]


@pytest.mark.integration
def test_an_async_can_read_channel_under_gevent_is_refused_naming_it(site):
    """gunicorn's gevent worker cannot run ``async def can_read_channel``: a 500, and the log names the hook and the fix."""
    refused = site.refusal("/async-staff/staff-room/", "alice")

    assert refused.status == 500
    log = site.server.stderr_text(50_000)
    assert "ImproperlyConfigured: AsyncStaffChannelView.can_read_channel() is a coroutine" in log
    assert "make it a plain method" in log


_STAFF_USERS = """
import json
from django.contrib.auth.models import User
from django.test import Client

users = {}
for name in (CHANGED, KEPT):
    user = User.objects.create_user(name, password="old password", is_staff=True)
    client = Client()
    client.force_login(user)
    users[name] = {"pk": user.pk, "cookie": client.cookies["sessionid"].value}
print(json.dumps(users))
"""

#: What happens to the user elsewhere (an admin, another tab) before ``channel_permission_changed``.
_CHANGES = {
    "is_staff": "user.is_staff = False\nuser.save()",
    "is_active": "user.is_active = False\nuser.save()",
    "logout": """
from importlib import import_module
from django.conf import settings
from django.contrib.auth import logout
from django.test import RequestFactory

request = RequestFactory().get("/")
request.session = import_module(settings.SESSION_ENGINE).SessionStore(COOKIE)
request.user = user
logout(request)  # as the user's logout view does: the session is flushed
""",
    "password": "user.set_password('new password')\nuser.save()",
}

_CHANGED_USER = """
from django.contrib.auth.models import User
from django_sse import channel_permission_changed

user = User.objects.get(username=CHANGED)
"""

_NOTIFY = """
channel_permission_changed(user, "staff-news")
channel_permission_changed(User.objects.get(username=KEPT), "staff-news")  # still staff
"""


@pytest.mark.integration
@pytest.mark.parametrize("change", list(_CHANGES))
def test_a_recheck_sees_the_user_as_a_new_request_would_load_them(site, publish, change):
    """Rule on ``request.user.is_staff``: after the change and a recheck, the stream ends before the next event; the unchanged user's goes on."""
    changed, kept = f"{change}-changed", f"{change}-kept"
    names = f"CHANGED, KEPT = {changed!r}, {kept!r}\n"
    output = django_command(site.env, "shell", "-c", names + _STAFF_USERS)
    users = json.loads(output.strip().splitlines()[-1])
    site.users.update(users)
    path = "/staff-events/staff-news/"
    streams = {name: site.connect(path, name) for name in (changed, kept)}
    try:
        for client in streams.values():
            assert client.status == 200, client.body
            wait_live(client)
        cookie = f"COOKIE = {users[changed]['cookie']!r}\n"
        script = names + cookie + _CHANGED_USER + _CHANGES[change] + _NOTIFY
        django_command(site.env, "shell", "-c", script)
        publish("note", "staff only", channel="staff-news")
        streams[changed].read_to_end(timeout=5)
        kept_got = data_of(streams[kept], 1)
        again = site.refusal(path, changed)
    finally:
        for client in streams.values():
            client.close()

    ended = streams[changed]
    assert ended.ended and not ended.reset
    assert ended.body.endswith(b"retry: 2000\n\n")
    assert b"staff only" not in ended.body
    assert kept_got == ["staff only"]
    assert not streams[kept].ended
    assert again.status == 403


def test_a_recheck_keeps_a_user_that_did_not_come_from_the_session():
    """A user set by other means (a token middleware) or a request without a session is asked about as it was loaded."""
    from types import SimpleNamespace

    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    from django_sse.permissions import current_request

    token_user = SimpleNamespace(pk=7, is_anonymous=False, is_staff=True)
    with_session = RequestFactory().get("/")
    with_session.session, with_session.user = SessionStore(), token_user
    without_session = RequestFactory().get("/")
    without_session.user = token_user

    assert current_request(with_session) is with_session
    assert current_request(without_session) is without_session


def test_channel_permission_changed_refuses_an_anonymous_user():
    """It needs an authenticated user or a primary key: AnonymousUser raises ValueError."""
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ValueError, match="authenticated user or a primary key"):
        django_sse.channel_permission_changed(AnonymousUser(), "group-news")


# --- CORS ------------------------------------------------------------------------------

STREAM = "/ticks/?n=1&interval=0"


def _get(path: str = STREAM, origin: str | None = ORIGIN):
    response = Client().get(path, **({"HTTP_ORIGIN": origin} if origin else {}))
    if response.streaming:
        b"".join(response.streaming_content)  # a one-tick stream: it ends by itself
        response.close()
    return response


def _preflight(origin: str = ORIGIN, headers: str = "last-event-id"):
    return Client().options(
        STREAM,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=headers,
    )


def _cors_headers(response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.items()
        if name.lower().startswith("access-control-")
    }


def _vary(response) -> list[str]:
    return [value.strip().lower() for value in response.get("Vary", "").split(",")]


def test_nothing_is_allowed_cross_origin_by_default():
    """Without SSE_CORS_* settings neither a stream nor a preflight carries any CORS header."""
    stream, head, preflight = _get(), Client().head(STREAM, HTTP_ORIGIN=ORIGIN), _preflight()

    assert stream.status_code == 200
    assert _cors_headers(stream) == {} and _cors_headers(head) == {}
    assert preflight.status_code == 200
    assert _cors_headers(preflight) == {}


def test_an_allowed_origin_gets_itself_back_and_vary_origin(settings):
    """SSE_CORS_ALLOWED_ORIGINS lists the origin: ACAO is that origin, Vary has Origin, no credentials."""
    settings.SSE_CORS_ALLOWED_ORIGINS = ["https://other.example.com", ORIGIN]

    stream, head, without = _get(), Client().head(STREAM, HTTP_ORIGIN=ORIGIN), _get(origin=None)
    elsewhere = _get(origin="https://app.example.com.evil.example")

    for response in (stream, head):
        assert _cors_headers(response) == {"Access-Control-Allow-Origin": ORIGIN}
        assert "origin" in _vary(response)
    assert _cors_headers(without) == {}
    assert _cors_headers(elsewhere) == {}


def test_allow_credentials_adds_the_credentials_header(settings):
    """SSE_CORS_ALLOW_CREDENTIALS = True: an allowed origin also gets Allow-Credentials: true."""
    settings.SSE_CORS_ALLOWED_ORIGINS = [ORIGIN]
    settings.SSE_CORS_ALLOW_CREDENTIALS = True

    assert _cors_headers(_get()) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Credentials": "true",
    }
    assert _cors_headers(_get(origin="https://evil.example")) == {}


def test_a_wildcard_allows_any_origin_but_never_with_credentials(settings):
    """["*"] answers ``*`` (no Vary needed); with credentials no origin at all is allowed."""
    settings.SSE_CORS_ALLOWED_ORIGINS = ["*"]
    anyone = _get(origin="https://anyone.example")
    settings.SSE_CORS_ALLOW_CREDENTIALS = True
    with_credentials = _get(origin="https://anyone.example")

    assert _cors_headers(anyone) == {"Access-Control-Allow-Origin": "*"}
    assert _cors_headers(with_credentials) == {}


def test_a_preflight_from_an_allowed_origin_is_answered_with_the_allowed_headers(settings):
    """OPTIONS with Access-Control-Request-Method: methods, SSE_CORS_ALLOWED_HEADERS, max age, origin."""
    settings.SSE_CORS_ALLOWED_ORIGINS = [ORIGIN]
    settings.SSE_CORS_ALLOW_CREDENTIALS = True
    settings.SSE_CORS_ALLOWED_HEADERS = ["last-event-id", "x-requested-with"]

    response = _preflight(headers="last-event-id, x-requested-with")

    assert response.status_code == 200
    assert _cors_headers(response) == {
        "Access-Control-Allow-Origin": ORIGIN,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": "last-event-id, x-requested-with",
        "Access-Control-Max-Age": "86400",
    }
    assert "origin" in _vary(response)


def test_a_preflight_from_a_disallowed_origin_gets_no_cors_header(settings):
    """An origin not listed (even one that only starts like an allowed one) gets a plain OPTIONS answer."""
    settings.SSE_CORS_ALLOWED_ORIGINS = [ORIGIN]

    for origin in (
        "https://evil.example",
        ORIGIN + ".evil.example",
        "http://app.example.com",
        "null",
    ):
        response = _preflight(origin=origin)
        assert response.status_code == 200
        assert _cors_headers(response) == {}, origin
