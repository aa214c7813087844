"""Streams for ``django_sse.testing``'s own tests: one whose permission reads the database, one held by a gate.

Used with ``@pytest.mark.urls("tests.testing_urls")`` or
``@override_settings(ROOT_URLCONF="tests.testing_urls")``.
"""

from __future__ import annotations

import threading

from django.urls import path

from django_sse.views import BaseSseView
from tests.views import ChannelView


class MemberView(ChannelView):
    """The URL's channel, to members of the group of that name (a query in ``can_read_channel``)."""

    def can_read_channel(self, request, channel):
        user = request.user
        return user.is_authenticated and user.groups.filter(name=channel).exists()


class GatedView(BaseSseView):
    """Send one event once ``gate`` is set, then end; ``finished`` is set when ``iterator()`` ends."""

    gate = threading.Event()
    finished = threading.Event()

    def iterator(self):
        try:
            self.gate.wait(60)
            self.sse.add_message("late", "after the gate")
            yield
        finally:
            self.finished.set()


urlpatterns = [
    path("member/<str:channel>/", MemberView.as_view()),
    path("gated/", GatedView.as_view()),
]
