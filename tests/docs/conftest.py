"""Fixtures of the docs' tests: samples loaded as modules, streams opened in this process, a page in Chromium."""

from __future__ import annotations

import time

import pytest

from django_sse.core.runtime import streams
from tests.browser.fixtures import WAIT, browser, example, example_kind  # noqa: F401  (fixtures)
from tests.support.doc_streams import Events, wait_subscribed
from tests.support.readme_samples import SampleModules


@pytest.fixture(autouse=True)
def no_stream_left_open():
    """After each test, every stream it opened in this process has ended (other tests count them)."""
    yield
    for _ in range(100):
        if not len(streams):
            return
        time.sleep(0.05)
    raise AssertionError(f"{len(streams)} stream(s) left open in this process")


@pytest.fixture
def modules():
    """Load samples as modules (``modules.load("myapp.views", code)``); forgotten at the end."""
    loaded = SampleModules("docs")
    yield loaded
    loaded.forget()


@pytest.fixture
def streams_opened():
    """Open streams with ``streams_opened(response)``; every one is closed at the end."""
    opened: list[Events] = []

    def open_(response) -> Events:
        events = Events(response)
        opened.append(events)
        events.read()  # the opening chunk: the stream is attached to its channels
        return events

    yield open_
    for events in opened:
        events.close()


@pytest.fixture
def orders_on_redis(settings, redis_url, redis_server, streams_opened, client):
    """A stream of the channel "orders" on Redis, subscribed; the broker of this process uses Redis."""
    settings.SSE_REDIS_URL = redis_url
    stream = streams_opened(client.get("/events/orders/"))
    wait_subscribed(redis_server, "orders")
    return stream


@pytest.fixture
def recording_page(example, browser):  # noqa: F811  (the fixtures, passed on)
    """A page of the example whose showShipped, reloadOrders and showConnection record ``calls``; (driver, wait)."""
    from selenium.webdriver.support.wait import WebDriverWait

    driver = browser()
    driver.get(example.url + "/")
    driver.execute_script(
        "window.calls = [];"
        "window.showShipped = (order) => calls.push(['shipped', order]);"
        "window.reloadOrders = (channels) => calls.push(['reload', channels]);"
        "window.showConnection = (state, role) => calls.push(['state', state, role]);"
    )
    return driver, WebDriverWait(driver, WAIT, poll_frequency=0.1)
