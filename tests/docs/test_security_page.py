"""docs/security.rst: the channel manager that gives each user a channel of their own, installed and tried.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import sys

from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory

from django_sse import checks
from tests.support.doc_pages import pages_tested_by
from tests.support.doc_streams import Events, a_user
from tests.support.readme_samples import Samples, track

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

CHANNEL_MANAGER = SAMPLES.find("python", "class UserChannels")


def test_channel_manager_sample_gives_each_user_their_own_channel(modules, settings):
    """With the sample as SSE_CHANNEL_MANAGER, user-<id> is readable by that user alone."""
    modules.load("myproject.channels", CHANNEL_MANAGER.code)
    settings.SSE_CHANNEL_MANAGER = "myproject.channels.UserChannels"
    assert [message for message in checks.check_channel_manager()] == []
    from django_sse.redisqueue import RedisQueueView

    factory = RequestFactory()

    def open_stream(user, channel):
        request = factory.get("/notifications/")
        request.user = user
        if channel == "me":  # path("notifications/", RedisQueueView.as_view(), {"channel": "me"})
            response = RedisQueueView.as_view()(request, channel="me")
        else:
            response = RedisQueueView.as_view(redis_channel=channel)(request)
        if response.status_code == 200:
            Events(response).read()  # the opening chunk, as a server would send it
        response.close()
        return response.status_code

    assert open_stream(AnonymousUser(), "user-3") == 403
    assert open_stream(a_user(4), "user-3") == 403
    assert open_stream(a_user(3), "user-3") == 200
    assert open_stream(a_user(3), "me") == 200  # the manager picks user-3
    assert open_stream(AnonymousUser(), "me") == 403  # user-anonymous: nobody's
    assert open_stream(AnonymousUser(), "orders") == 200  # other channels stay public
    manager = sys.modules["myproject.channels"].UserChannels()
    request = factory.get("/notifications/")
    request.user = a_user(3)
    assert manager.get_channels_for_request(request, {"channel": "me"}) == ["user-3"]
    assert manager.get_channels_for_request(request, {"channel": "orders"}) is None


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
