"""docs/tutorial.rst: the countdown view, the per-user view and the send_event command, run.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from tests.support.doc_pages import pages_tested_by
from tests.support.doc_streams import Events, a_user, check_send_event_command, named
from tests.support.readme_samples import Samples, track

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

COUNTDOWN_VIEW = SAMPLES.find("python", "class CountdownView")
USER_EVENTS_VIEW = SAMPLES.find("python", "class UserEventsView")
SEND_EVENT_COMMAND = SAMPLES.find("console", """send_event orders order-shipped '{"id": 42}'""")


def test_countdown_sample_refuses_anonymous_users_and_resumes_from_last_event_id(modules):
    """CountdownView: 403 without a user; with one, retry 5000, counts down from Last-Event-ID to 0, ends."""
    view = modules.load("myapp.views", COUNTDOWN_VIEW.code).CountdownView.as_view()
    factory = RequestFactory()

    anonymous = factory.get("/countdown/")
    anonymous.user = AnonymousUser()
    refused = view(anonymous)
    assert (refused.status_code, refused.content) == (403, b"Log in first.")

    request = factory.get("/countdown/", HTTP_LAST_EVENT_ID="3")
    request.user = a_user(1)
    stream = Events(view(request))
    events = stream.to_end()
    assert stream.raw.startswith(b"retry: 5000\n")
    assert [(e.type, json.loads(e.data)["n"], e.last_event_id) for e in events] == [
        ("count", 2, "2"),
        ("count", 1, "1"),
        ("count", 0, "0"),
    ]
    assert view.view_class.heartbeat_interval == 20


def test_user_events_sample_streams_only_the_users_own_channel(modules):
    """UserEventsView: a user reads user-<own pk> and gets its events; another pk or anonymous gets 403."""
    view = modules.load("notifications.views", USER_EVENTS_VIEW.code).UserEventsView.as_view()
    factory = RequestFactory()

    def get(user, user_id):
        request = factory.get(f"/users/{user_id}/events/")
        request.user = user
        return view(request, user_id=user_id)

    assert get(a_user(7), 8).status_code == 403
    assert get(AnonymousUser(), 7).status_code == 403
    stream = Events(get(a_user(7), 7))
    try:
        stream.read()  # opening: attached to user-7
        from django_sse import send_event

        send_event("notification", {"text": "Your parcel left"}, channel="user-7")
        send_event("notification", {"text": "not yours"}, channel="user-8")
        send_event("done", "", channel="user-7")
        events = stream.until(named("done"))
        assert [json.loads(e.data)["text"] for e in events if e.type == "notification"] == [
            "Your parcel left"
        ]
    finally:
        stream.close()


@pytest.mark.integration
def test_send_event_command_sample_publishes_json_to_a_stream(orders_on_redis):
    """`manage.py send_event orders order-shipped '{"id": 42}' --json` prints the id the stream receives."""
    check_send_event_command(SEND_EVENT_COMMAND.code, orders_on_redis)


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
