"""The example project in headless Chromium: what a person sees, served by gunicorn or uvicorn + Redis.

Each test saves a screenshot of every window it opened under
test-output/screenshots/ (see conftest.py), pass or fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from selenium.webdriver.common.by import By

from tests.browser.fixtures import (
    example_env,
    logged,
    text_of,
    wait_for,
    wait_open,
    wait_subscribed,
)
from tests.support.servers import REPO_TOP

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def open_feed(driver, example):
    driver.get(example.url + "/feed/")
    wait_open(driver)


def feed_texts(driver):
    """Return the texts of the feed's messages, newest first, exactly as in the DOM."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .text')].map((e) => e.textContent)"
    )


def test_clock_page_receives_ticks(example, browser):
    """The clock page opens its stream and shows a tick a second, ids counting up from 1."""
    driver = browser()
    driver.get(example.url + "/clock/")

    wait_for(driver, lambda d: int(text_of(d, "tick-count")) >= 3, message="fewer than 3 ticks")

    ticks = logged(driver, "tick")
    assert [tick["lastEventId"] for tick in ticks[:3]] == ["1", "2", "3"]
    assert [json.loads(tick["data"])["tick"] for tick in ticks[:3]] == [1, 2, 3]
    assert text_of(driver, "clock") != "--:--:--"
    assert driver.find_element(By.ID, "connection").get_attribute("data-state") == "open"
    # The page's CSS came from the example's own /static/ URL (DEBUG is off).
    assert driver.find_element(By.TAG_NAME, "header").value_of_css_property("display") == "flex"


def test_the_browser_client_is_collected_and_served_by_whitenoise(example, browser):
    """The feed page's {% static %} client answers 200 as JavaScript from WhiteNoise (DEBUG off), and connects."""
    driver = browser()
    open_feed(driver, example)
    url = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map((e) => e.name).find((name) => name.endsWith('/django_sse/eventsource.js'))"
    )
    assert url == example.url + "/static/django_sse/eventsource.js"
    answer = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then((r) => done([r.status, r.headers.get('content-type'),"
        " r.headers.get('cache-control')]));",
        url,
    )
    status, content_type, cache_control = answer
    assert (status, "javascript" in content_type) == (200, True), answer
    # WhiteNoise's header (max-age 60 s with DEBUG off); Django's own static view sends none.
    assert "max-age=60" in cache_control, answer


def test_message_sent_from_another_process_appears_on_two_pages(example, browser):
    """`manage.py send_event` in its own process reaches two open feed pages at once, once each."""
    driver = browser()
    open_feed(driver, example)
    first = driver.current_window_handle
    driver.switch_to.new_window("window")
    open_feed(driver, example)
    second = driver.current_window_handle
    wait_subscribed(example, "feed")

    event_id = example.manage("send_event", "feed", "message", "Hello from another process").strip()

    for handle in (first, second):
        driver.switch_to.window(handle)
        wait_for(driver, lambda d: feed_texts(d), message="the message never appeared")
        assert feed_texts(driver) == ["Hello from another process"]
        item = driver.find_element(By.CSS_SELECTOR, "#messages li")
        assert item.get_attribute("data-id") == event_id
        assert item.find_element(By.CLASS_NAME, "author").text == "(command line)"


def cut_by_killing_the_worker(example):
    """SIGKILL the serving process, as a crash would; a new one serves (``Example.crash``)."""
    example.crash()


def cut_by_restarting_the_server(example):
    """Stop the server gracefully (SIGTERM: streams end with a retry hint) and start it again."""
    example.server.restart()


@pytest.mark.parametrize(
    "cut",
    [cut_by_killing_the_worker, cut_by_restarting_the_server],
    ids=["worker-killed", "graceful-restart"],
)
def test_eventsource_reconnects_after_the_connection_is_cut_and_misses_nothing(
    example, browser, cut
):
    """While events are published the connection is cut; the browser resumes with Last-Event-ID, shows 1..N in order."""
    count = 30
    driver = browser()
    driver.get(example.url + "/reconnect/")
    wait_open(driver)
    wait_subscribed(example, "sequence")
    driver.execute_script(
        "window.opened = []; source.addEventListener('open', () => opened.push(Date.now()));"
    )
    publisher = subprocess.Popen(
        [
            sys.executable,
            "example/manage.py",
            "publish_sequence",
            "--count",
            str(count),
            "--interval",
            "0.2",
        ],
        cwd=REPO_TOP,
        env=example_env(example.redis.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(driver, lambda d: int(text_of(d, "received")) >= 5, message="no sequence arrived")
        cut(example)
        # Until every number arrived, or the browser gave up (an error status closes an EventSource).
        wait_for(
            driver,
            lambda d: int(text_of(d, "received")) >= count or text_of(d, "state") == "closed",
            timeout=60,
            message="the sequence did not complete after the connection was cut",
        )
        assert text_of(driver, "state") == "open", "the browser's EventSource gave up reconnecting"
        output, _ = publisher.communicate(timeout=30)
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait(5)
    assert publisher.returncode == 0, output

    numbers = [json.loads(event["data"])["n"] for event in logged(driver, "seq")]
    assert numbers == list(range(1, count + 1))
    assert (text_of(driver, "gaps"), text_of(driver, "resets")) == ("0", "0")
    assert text_of(driver, "verdict") == "No message missed."

    # The new connection resumed after exactly the last id the browser had received...
    log = driver.execute_script("return sseLog")
    resumed = [index for index, event in enumerate(log) if event["type"] == "resumed"]
    assert len(resumed) >= 2, log
    before = [event for event in log[: resumed[1]] if event["type"] == "seq"]
    assert json.loads(log[resumed[1]]["data"])["last_event_id"] == before[-1]["lastEventId"]
    # ...and got events published while the browser was disconnected, replayed from Redis.
    reopened = driver.execute_script("return opened")[0]
    after = [event for event in log[resumed[1] :] if event["type"] == "seq"]
    assert int(after[0]["lastEventId"].split("-")[0]) < reopened


@pytest.mark.parametrize("how", ["command", "form"])
def test_non_ascii_text_arrives_exactly_as_sent(example, browser, how):
    """Emoji, U+2028, U+0085, blank and indented lines reach event.data and the page unchanged."""
    text = " leading space, emoji 👋🏽🦊, a line separator\u2028and NEL\u0085 here\nsecond line\n\n   indented\u2029end: ✓\n"
    driver = browser()
    open_feed(driver, example)
    wait_subscribed(example, "feed")

    if how == "command":
        example.manage("send_event", "feed", "message", text)
    else:
        driver.execute_script(
            "const form = document.getElementById('feed-form');"
            "form.elements.author.value = arguments[0]; form.elements.text.value = arguments[1];",
            "Zoë 🦊",
            text,
        )
        driver.find_element(By.CSS_SELECTOR, "#feed-form button").click()

    wait_for(driver, lambda d: feed_texts(d), message="the message never appeared")
    (event,) = logged(driver, "message")
    if how == "command":
        assert event["data"] == text
    else:
        assert json.loads(event["data"])["text"] == text
        assert json.loads(event["data"])["author"] == "Zoë 🦊"
    assert feed_texts(driver) == [text]
