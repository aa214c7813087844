"""docs/migrating/django-eventstream.rst: every code sample run, and the mapping it states checked.

Samples are read from the page itself (``.. code-block::`` directives) and
looked up by a marker they contain; ``test_every_sample_is_exercised``, the
last test, fails for any sample that no passing test read
(``tests/support/readme_samples.py``). Besides running the samples, the tests check
what the page's tables say of django-sse: the names and defaults it cites,
the hooks' signatures, the CORS settings and the ``stream-reset`` that a
browser still holding a django-eventstream id gets.
"""

from __future__ import annotations

import inspect
import re
from importlib import resources
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.utils.module_loading import import_string

import django_sse
from django_sse import checks, send_event
from django_sse.conf import DEFAULTS
from django_sse.exceptions import InvalidChannel
from django_sse.permissions import ChannelManager
from django_sse.redisqueue import RedisQueueView
from django_sse.testing import SseStream, StreamTimeout, memory_broker, sse_stream
from tests.support.readme_samples import SampleModules, Samples, track
from tests.support.servers import REPO_TOP

PAGE = REPO_TOP / "docs" / "migrating" / "django-eventstream.rst"
TEXT = PAGE.read_text(encoding="utf-8")

SAMPLES = Samples(PAGE)
docs_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

VIEWS = SAMPLES.find("python", "# myapp/views.py")
URLS = SAMPLES.find("python", "# myapp/urls.py")
SEND = SAMPLES.find("python", 'send_event("status"')
MANAGER = SAMPLES.find("python", "class ProjectChannels")

MANAGER_PATH = "myproject.channels.ProjectChannels"


# --- helpers ---------------------------------------------------------------------


@pytest.fixture
def modules():
    """Load samples as modules (``modules.load("myapp.views", code)``); forgotten at the end."""
    loaded = SampleModules(PAGE.name)
    yield loaded
    loaded.forget()


class Groups:
    """``user.groups`` as far as the sample uses it: ``filter(name=...).exists()``, read at each call."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def filter(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(exists=lambda: name in self.names)


def member(pk: int, *groups: str) -> SimpleNamespace:
    """A logged-in user in ``groups``; removing a name from ``user.group_names`` is a revocation."""
    names = set(groups)
    return SimpleNamespace(
        pk=pk, is_authenticated=True, is_anonymous=False, group_names=names, groups=Groups(names)
    )


NO_USER = object()  # a request without ``user``: no AuthenticationMiddleware


def open_channel(channel: str, user=NO_USER):
    """``RedisQueueView(redis_channel=channel)`` for ``user``: the response, its opening read if 200."""
    request = RequestFactory().get("/events/")
    if user is not NO_USER:
        request.user = user
    response = RedisQueueView.as_view(redis_channel=channel)(request)
    if response.status_code != 200:
        return response
    stream = SseStream(response)
    stream.read_opening()
    return stream


def status(channel: str, user=NO_USER) -> int:
    """The status a stream of ``channel`` opens with for ``user`` (closed at once when 200)."""
    opened = open_channel(channel, user)
    if isinstance(opened, SseStream):
        opened.close()
    return opened.status_code


# --- routes and channels ---------------------------------------------------------


def test_translated_routes_stream_the_channels_the_old_keyword_arguments_named(
    modules, settings, client
):
    """Each route of the URLconf sample streams exactly the channels of its django-eventstream route."""
    modules.load("myapp.views", VIEWS.code)
    modules.load("myapp.urls", URLS.code)
    settings.ROOT_URLCONF = "myapp.urls"
    routes = {
        "/events/": ["test"],  # {"channels": ["test"]}
        "/dashboard/events/": ["orders", "stock"],  # several channels
        "/objects/7/events/": ["object-7"],  # {"format-channels": ["object-{obj_id}"]}
        "/channels/news/events/": ["news"],  # events/<channel>/
        "/channels/events/?channel=a&channel=b": ["a", "b"],  # ?channel= query parameters
    }
    with memory_broker():
        for path, channels in routes.items():
            with sse_stream(client, path) as stream:
                send_event("hello", "not read here", channel="unread")
                for channel in channels:
                    send_event("hello", channel, channel=channel)
                events = stream.read_events(len(channels))
            assert [(event.type, event.data) for event in events] == [
                ("hello", channel) for channel in channels
            ], path
        refused = client.get("/channels/events/")
    assert refused.status_code == 400  # no channel named: what the page says
    assert b"names no channel" in refused.content


def test_an_old_channels_dictionary_left_on_a_redis_queue_view_streams_the_default_channel():
    """``{"channels": [...]}`` kept on a RedisQueueView route does nothing: SSE_DEFAULT_CHANNEL is read."""
    request = RequestFactory().get("/events/")
    with memory_broker():
        response = RedisQueueView.as_view()(request, channels=["test"])
        stream = SseStream(response)
        try:
            stream.read_opening()
            send_event("hello", "test", channel="test")
            send_event("hello", "default")  # SSE_DEFAULT_CHANNEL
            [event] = stream.read_events(1)
        finally:
            stream.close()
    assert event.data == "default"


# --- sending ---------------------------------------------------------------------


def test_send_event_sample_publishes_event_name_first_and_strings_as_they_are(client):
    """The sample's two calls reach a stream of "test": a JSON object, then a JSON-encoded string."""
    with memory_broker():
        with sse_stream(client, "/events/test/") as stream:
            exec(compile(SEND.code, f"<{PAGE.name} send_event>", "exec"), {})
            events = stream.read_events(2)
    assert [(event.type, event.json()) for event in events] == [
        ("message", {"text": "hello world"}),
        ("status", "ready"),
    ]
    assert events[1].data == '"ready"'  # what a page's JSON.parse() expects


def test_an_unconverted_call_fails_or_publishes_under_the_wrong_names(client):
    """``send_event(channel, event_type, data)`` as written for django-eventstream, unchanged."""
    with memory_broker():
        with pytest.raises(InvalidChannel):
            send_event("test", "message", {"text": "hello world"})  # the dict taken for the channel
        with sse_stream(client, "/events/hello/") as stream:
            send_event("test", "message", "hello")
            [event] = stream.read_events(1)
    assert (event.type, event.data) == ("test", "message")


# --- who may read ----------------------------------------------------------------


def test_channel_manager_sample_refuses_and_permits_the_right_users(modules, settings):
    """private-* for logged-in users, group-<name> for members, the rest for all; 403 before streaming."""
    modules.load("myproject.channels", MANAGER.code)
    settings.SSE_CHANNEL_MANAGER = MANAGER_PATH
    assert checks.check_channel_manager() == []
    editor, outsider = member(1, "editors"), member(2)
    with memory_broker():
        assert status("private-notes", AnonymousUser()) == 403
        assert status("private-notes") == 403  # no AuthenticationMiddleware: user None
        assert status("private-notes", outsider) == 200
        assert status("group-editors", AnonymousUser()) == 403
        assert status("group-editors", outsider) == 403
        assert status("group-editors", editor) == 200
        assert status("news", AnonymousUser()) == 200
        assert status("news") == 200


def test_channel_permission_changed_ends_the_stream_of_a_removed_member_only(modules, settings):
    """After a revocation and channel_permission_changed, that user's stream ends; others go on."""
    modules.load("myproject.channels", MANAGER.code)
    settings.SSE_CHANNEL_MANAGER = MANAGER_PATH
    alice, bob = member(1, "editors"), member(2, "editors")
    with memory_broker():
        streams = {user.pk: open_channel("group-editors", user) for user in (alice, bob)}
        try:
            alice.group_names.discard("editors")  # user.groups.remove(group)
            django_sse.channel_permission_changed(alice, "group-editors")
            django_sse.channel_permission_changed(bob, "group-editors")
            with pytest.raises(StreamTimeout, match="it ended") as ended:
                streams[alice.pk].read_events(1)
            assert ended.value.events == []
            send_event("edit", "1", channel="group-editors")
            [event] = streams[bob.pk].read_events(1)
            assert event.data == "1"
            assert status("group-editors", alice) == 403  # the browser's reconnection
        finally:
            for stream in streams.values():
                stream.close()
    with pytest.raises(ValueError):
        django_sse.channel_permission_changed(AnonymousUser(), "group-editors")


def test_hooks_take_the_arguments_the_page_names():
    """The manager's and the view's hooks, and send_event, have the signatures of the tables."""

    def names(function) -> list[str]:
        return list(inspect.signature(function).parameters)

    assert names(ChannelManager.can_read_channel) == ["self", "user", "channel"]
    assert names(ChannelManager.get_channels_for_request) == ["self", "request", "view_kwargs"]
    assert names(RedisQueueView.can_read_channel) == ["self", "request", "channel"]
    assert names(django_sse.send_event) == [
        "event_name",
        "data",
        "channel",
        "history",
        "on_commit",
        "using",
    ]
    assert names(django_sse.channel_permission_changed) == ["user", "channel"]
    request = RequestFactory().get("/events/")
    assert ChannelManager().get_channels_for_request(request, {"channel": "x"}) is None


# --- history, settings, browser --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "old_id", "channels"),
    [
        ("/events/test/", "test:42", ["test"]),
        ("/multi/?channel=orders&channel=stock", "orders:5,stock:7", ["orders", "stock"]),
    ],
)
def test_a_browser_back_with_a_django_eventstream_id_gets_one_stream_reset(
    client, path, old_id, channels
):
    """An id of django-eventstream's form (channel:id,...) cannot be placed: stream-reset, then live."""
    with memory_broker():
        for channel in channels:
            send_event("message", "before the switch", channel=channel)
        with sse_stream(client, path, last_event_id=old_id) as stream:
            [reset] = stream.read_events(1)
            send_event("message", "after", channel=channels[0])
            [live] = stream.read_events(1)
    assert reset.type == DEFAULTS["SSE_RESET_EVENT"] == "stream-reset"
    assert sorted(reset.json()["channels"]) == channels
    assert (live.type, live.data) == ("message", "after")


def test_every_setting_and_module_the_page_names_exists_with_the_stated_default():
    """``SSE_*`` literals are settings of conf.DEFAULTS; ``django_sse.*`` paths import; defaults match."""
    named = set(re.findall(r"\bSSE_[A-Z_]+\b", TEXT))
    assert named and named <= set(DEFAULTS), sorted(named - set(DEFAULTS))
    for path in set(re.findall(r"``(django_sse(?:\.\w+)+)``", TEXT)):
        assert import_string(path)
    for setting, value in {
        "SSE_HISTORY": True,
        "SSE_HISTORY_TTL": 86400,
        "SSE_HISTORY_MAXLEN": 10000,
        "SSE_MAX_CHANNELS": 20,
        "SSE_MAX_CHANNEL_LENGTH": 200,
        "SSE_REDIS_PREFIX": "sse:",
        "SSE_CORS_ALLOWED_ORIGINS": (),
        "SSE_CORS_ALLOWED_HEADERS": ("last-event-id", "cache-control"),
    }.items():
        assert DEFAULTS[setting] == value, setting
    client_module = resources.files("django_sse").joinpath("static/django_sse/eventsource.js")
    assert "export function connect(" in client_module.read_text(encoding="utf-8")


def test_translated_settings_pass_the_checks_and_cors_answers_as_the_table_says(
    modules, settings, client
):
    """The settings table's values: the checks accept them; an allowed origin gets the CORS headers."""
    modules.load("myproject.channels", MANAGER.code)
    settings.SSE_REDIS_URL = "redis://localhost:6379/0"
    settings.SSE_CHANNEL_MANAGER = MANAGER_PATH
    settings.SSE_CORS_ALLOWED_ORIGINS = ["https://example.com"]
    settings.SSE_CORS_ALLOW_CREDENTIALS = True
    assert [message for check in checks.ALL_CHECKS for message in check()] == []
    with memory_broker():
        preflight = client.options(
            "/events/news/",
            HTTP_ORIGIN="https://example.com",
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        )
        with sse_stream(client, "/events/news/", HTTP_ORIGIN="https://example.com") as stream:
            headers = stream.response
            assert headers["Access-Control-Allow-Origin"] == "https://example.com"
            assert headers["Access-Control-Allow-Credentials"] == "true"
        with sse_stream(client, "/events/news/", HTTP_ORIGIN="https://other.example") as stream:
            assert not stream.response.has_header("Access-Control-Allow-Origin")
        settings.SSE_CORS_ALLOWED_ORIGINS = ["*"]  # ignored while credentials are allowed
        with sse_stream(client, "/events/news/", HTTP_ORIGIN="https://other.example") as stream:
            assert not stream.response.has_header("Access-Control-Allow-Origin")
    assert preflight["Access-Control-Allow-Headers"] == "last-event-id, cache-control"

    # What the page warns of: django-eventstream's forms fail the checks.
    settings.SSE_CORS_ALLOWED_HEADERS = "Authorization"
    settings.SSE_CORS_ALLOWED_ORIGINS = ["https://example.com/"]
    assert sorted(message.id for message in checks.check_cors()) == [
        "django_sse.E050",
        "django_sse.E052",
    ]


def test_every_sample_is_exercised(request):
    """Every code block of the page was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
