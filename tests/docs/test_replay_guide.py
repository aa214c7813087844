"""docs/guides/replay.rst: the stream-reset listener in Chromium, and the view that sends an initial state.

Samples are looked up by a marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from tests.support.doc_pages import pages_tested_by
from tests.support.readme_samples import Samples, track

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

RESET_SCRIPT = SAMPLES.find("javascript", "stream-reset")
INITIAL_STATE_VIEW = SAMPLES.find("python", "class OrdersView")


@pytest.mark.browser
@pytest.mark.integration
def test_stream_reset_sample_reloads_on_reset_and_handles_events(example, recording_page):
    """In Chromium, the sample's stream-reset listener runs for a lost position, then events arrive."""
    driver, wait = recording_page
    # An id this channel never issued: the server cannot resume from it.
    driver.execute_script(
        RESET_SCRIPT.code.replace('"/orders/events/"', '"/feed/events/?lastEventId=1-0"')
    )
    wait.until(lambda d: d.execute_script("return calls.length") >= 1)
    wait.until(lambda _: example.subscribers("feed") >= 1)
    example.manage("send_event", "feed", "order-shipped", '{"id": 42}', "--json")
    wait.until(lambda d: d.execute_script("return calls.length") >= 2)
    assert driver.execute_script("return calls") == [["reload", ["feed"]], ["shipped", {"id": 42}]]


FAKE_ORDER_MODEL = """
class _Open:
    def count(self):
        return 3


class _Manager:
    def filter(self, **lookups):
        assert lookups == {"open": True}
        return _Open()


class Order:
    objects = _Manager()
"""


def test_initial_state_sample_sends_the_count_then_live_events_and_nothing_on_resume(modules):
    """OrdersView: a new client gets {"open": 3} first, then the live event; a resuming one does not."""
    from django_sse import send_event
    from django_sse.testing import SseStream, memory_broker

    modules.load("shop.models", FAKE_ORDER_MODEL)
    view = modules.load("shop.views", INITIAL_STATE_VIEW.code).OrdersView.as_view()
    with memory_broker():
        stream = SseStream(view(RequestFactory().get("/orders/events/")))
        try:
            stream.read_opening()
            event_id = send_event("order-shipped", {"id": 1}, channel="orders")
            first, live = stream.read_events(2)
        finally:
            stream.close()
        send_event("order-shipped", {"id": 2}, channel="orders")
        request = RequestFactory().get("/orders/events/", HTTP_LAST_EVENT_ID=event_id)
        resumed = SseStream(view(request))
        try:
            [replayed] = resumed.read_events(1)
        finally:
            resumed.close()

    assert (first.type, first.json()) == ("orders", {"open": 3})
    assert (live.type, live.json(), live.last_event_id) == ("order-shipped", {"id": 1}, event_id)
    assert (replayed.type, replayed.json()) == ("order-shipped", {"id": 2})


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
