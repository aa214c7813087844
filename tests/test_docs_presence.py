"""docs/guides/presence.rst: every code sample run, the sample output checked against the command.

Samples are read from the page itself (``.. code-block::`` directives) and
looked up by a marker they contain; ``test_every_sample_is_exercised``, the
last test, fails for any sample that no passing test read
(``tests/support/readme_samples.py``). The page's ``sse_status`` output, text and
JSON, is what the command prints for the reports it describes, written to a
real Redis.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import re
import shlex

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.core.handlers.exception import convert_exception_to_response
from django.core.management import call_command
from django.http import HttpRequest
from django.test import RequestFactory

from django_sse.brokers.redis.broker import RedisBroker
from django_sse.conf import DEFAULTS
from django_sse.core import runtime
from django_sse.core.mailbox import Mailbox
from django_sse.presence import EXPIRY_INTERVALS, Presence, ProcessReport
from django_sse.testing import memory_broker
from tests.support.readme_samples import SampleModules, Samples, track
from tests.support.servers import REPO_TOP

PAGE = REPO_TOP / "docs" / "guides" / "presence.rst"
TEXT = PAGE.read_text(encoding="utf-8")

SAMPLES = Samples(PAGE)
docs_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

VIEW = SAMPLES.find("python", "# myapp/views.py")
ASYNC_VIEW = SAMPLES.find("python", "# myapp/async_views.py")
STATUS = SAMPLES.find("console", "$ python manage.py sse_status")
STATUS_JSON = SAMPLES.find("json", '"busiest_channels"')

# The site the sample output describes: three processes on two machines.
REPORTED = 1777894817.0  # 2026-05-04T11:40:17Z
WEB_1_STARTED, WEB_2_STARTED = 1777881482.0, 1777885950.0  # 07:58:02Z, 09:12:30Z
ALICE, BOB, CAROL, DAVE = "17", "23", "31", "42"
REPORTS = [
    ProcessReport(
        "web-1",
        4242,
        WEB_1_STARTED,
        REPORTED,
        3,
        True,
        {"room": Presence(2, frozenset({ALICE, BOB})), "lobby": Presence(1, frozenset({CAROL}))},
    ),
    ProcessReport(
        "web-1",
        4243,
        WEB_1_STARTED,
        REPORTED,
        2,
        True,
        {"room": Presence(1, frozenset()), "news": Presence(1, frozenset({ALICE}))},
    ),
    ProcessReport(
        "web-2",
        5151,
        WEB_2_STARTED,
        REPORTED,
        4,
        False,
        {"room": Presence(3, frozenset({BOB, DAVE})), "news": Presence(1, frozenset())},
    ),
]


@pytest.fixture
def modules():
    loaded = SampleModules(PAGE.name)
    yield loaded
    loaded.forget()


@pytest.fixture
def site_redis(redis_url, settings):
    """A Redis holding the three reports of the sample output; the command reads it."""
    broker = RedisBroker(redis_url, prefix="sse:", timeout=2, maxlen=10, ttl=0)
    try:
        for report in REPORTS:
            broker.write_presence(report.key, report.encode(), ttl=60)
    finally:
        broker.close()
    settings.SSE_REDIS_URL = redis_url


def attached_readers(channel: str, owners: list[str | None]) -> list[Mailbox]:
    hub = runtime.get_hub()
    readers = [Mailbox(5, owner=owner) for owner in owners]
    for reader in readers:
        hub.attach(reader, [channel])
    return readers


# --- the views -------------------------------------------------------------------


@pytest.fixture
def member(django_user_model):
    """A user in the group of room 7, the sample's rule for who may read it."""
    user = django_user_model.objects.create_user("member")
    user.groups.add(Group.objects.create(name="room-7"))
    return user


@pytest.fixture
def outsider(django_user_model):
    """A logged-in user of no room."""
    return django_user_model.objects.create_user("outsider")


def request_of(user) -> HttpRequest:
    """A GET as the authentication middleware leaves it for ``user``."""
    request = RequestFactory().get("/")

    async def auser():
        return user

    request.user = user
    request.auser = auser
    return request


@pytest.mark.django_db(transaction=True)  # the async sample asks the database from a thread
def test_the_view_sample_answers_with_the_rooms_streams_and_users(modules, member):
    """room_presence counts the streams of ``room-<room>`` and lists their owners, sorted."""
    views = modules.load("myapp.views", VIEW.code)
    with memory_broker():
        attached_readers("room-7", [BOB, ALICE, ALICE, None])
        attached_readers("room-8", [CAROL])
        response = views.room_presence(request_of(member), 7)

    assert json.loads(response.content) == {"streams": 4, "online": [ALICE, BOB]}


@pytest.mark.django_db(transaction=True)
def test_the_async_view_sample_awaits_the_same_answer(modules, member):
    """The async room_presence, awaited, says what the sync one says."""
    modules.load("myapp.views", VIEW.code)
    views = modules.load("myapp.async_views", ASYNC_VIEW.code)
    with memory_broker():
        attached_readers("room-7", [DAVE, None])
        response = asyncio.run(views.room_presence(request_of(member), "7"))

    assert json.loads(response.content) == {"streams": 2, "online": [DAVE]}


@pytest.mark.django_db(transaction=True)
def test_the_view_samples_refuse_who_may_not_read_the_room(modules, member, outsider):
    """A user outside the room, or anonymous, gets 403 from presence, sync or async, as from the stream."""
    views = modules.load("myapp.views", VIEW.code)
    async_views = modules.load("myapp.async_views", ASYNC_VIEW.code)
    # As Django's handler calls them: PermissionDenied becomes a 403.
    presence = convert_exception_to_response(functools.partial(views.room_presence, room=7))
    async_presence = convert_exception_to_response(
        functools.partial(async_views.room_presence, room=7)
    )
    stream = views.RoomEventsView.as_view()
    with memory_broker():
        attached_readers("room-7", [ALICE])
        answers = [
            response
            for user in [outsider, AnonymousUser()]
            for response in [
                presence(request_of(user)),
                asyncio.run(async_presence(request_of(user))),
                stream(request_of(user), room=7),
            ]
        ]
        opened = stream(request_of(member), room=7)  # the rule lets a member in
        opened.close()

    assert opened.status_code == 200
    assert [response.status_code for response in answers] == [403] * 6
    assert not any(ALICE.encode() in response.content for response in answers)


# --- sse_status ------------------------------------------------------------------


def test_the_sse_status_sample_is_what_the_command_prints(site_redis):
    """The console sample, run: the command line it shows prints exactly the lines below it."""
    command, *expected = STATUS.code.rstrip("\n").splitlines()
    program, manage, name, *args = shlex.split(command.removeprefix("$ "))
    out = io.StringIO()
    call_command(name, *args, stdout=out)

    assert (program, manage) == ("python", "manage.py")
    assert out.getvalue().rstrip("\n").splitlines() == expected


def test_the_json_sample_is_what_the_command_prints_with_json(site_redis):
    """The JSON sample is, to the character, ``sse_status room --json`` for the same reports."""
    out = io.StringIO()
    call_command("sse_status", "room", "--json", stdout=out)

    assert out.getvalue().rstrip("\n") == STATUS_JSON.code.rstrip("\n")
    assert json.loads(STATUS_JSON.code)["presence"]["users"] == sorted([ALICE, BOB, DAVE])


# --- what the prose says --------------------------------------------------------


def test_the_stated_interval_expiry_and_trim_are_the_codes():
    """Default interval 2 s, expiry three intervals (6 s), the trim a minute past it, the sum right."""
    from django_sse.brokers.redis import common as redis_broker

    assert DEFAULTS["SSE_PRESENCE_INTERVAL"] == 2.0
    assert EXPIRY_INTERVALS == 3
    assert "**three intervals** (6 s by default)" in TEXT
    assert redis_broker._PRESENCE_SLACK == 60.0 and "a minute past their expiry" in TEXT
    workers, per_second = re.search(
        r"With (\d+) worker processes and the default interval that is (\d+) transactions", TEXT
    ).groups()
    assert int(workers) / DEFAULTS["SSE_PRESENCE_INTERVAL"] == int(per_second)


def test_every_sample_is_exercised(request):
    """Every code block of the page was read by a test that passed."""
    SAMPLES.check(request)
