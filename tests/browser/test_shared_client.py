"""django-sse's browser client (django_sse/eventsource.js) in Chromium, on the example's live feed.

Eight tabs of one browser read the feed through one connection to the server;
the tab holding it can close and another takes over without losing an event;
JSON arrives parsed; a stream-reset reaches the page's callback.
"""

from __future__ import annotations

import time

import pytest

from tests.browser.fixtures import WAIT, Example, serve_example, wait_for, wait_subscribed
from tests.support.procfs import socket_inodes
from tests.support.sse import SseClient

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TABS = 8


def open_tabs(driver, example, count):
    """Open the feed in ``count`` tabs of ``driver``; return their window handles once each is open."""
    handles = []
    for index in range(count):
        if index:
            driver.switch_to.new_window("tab")
        driver.get(example.url + "/feed/")
        handles.append(driver.current_window_handle)
    for handle in handles:
        driver.switch_to.window(handle)
        wait_for(driver, lambda d: d.execute_script("return window.feedStream?.state") == "open",
                 message="a tab's stream never opened")  # fmt: skip
    return handles


def roles(driver, handles):
    found = {}
    for handle in handles:
        driver.switch_to.window(handle)
        found[handle] = driver.execute_script("return window.feedStream.role")
    return found


def texts(driver, handle):
    driver.switch_to.window(handle)
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .text')].map((e) => e.textContent)"
    )


def connections_to_server(example) -> int:
    """Established TCP connections the example's worker holds on its listening port."""
    [worker] = example.server.worker_pids()
    inodes = socket_inodes(worker)
    port = example.server.port
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[9] in inodes and local_port == port and fields[3] == "01":
                count += 1
    return count


def wait_everywhere(driver, handles, expected):
    for handle in handles:
        wait_for(
            driver,
            lambda d, h=handle: texts(d, h)[: len(expected)] == expected,
            message=f"tab {handle} did not show {expected}",
        )


def tabs_with_a_first_event(driver, example, count, text):
    """Open ``count`` tabs, publish ``text`` and wait for it in each; return the tabs and the leader."""
    handles = open_tabs(driver, example, count)
    wait_subscribed(example, "feed")
    example.manage("send_event", "feed", "message", text)
    wait_everywhere(driver, handles, [text])
    [leader] = [handle for handle, role in roles(driver, handles).items() if role == "leader"]
    return handles, leader


def test_eight_tabs_share_one_connection_and_all_show_every_event(example, browser):
    driver = browser()
    handles = open_tabs(driver, example, TABS)
    wait_subscribed(example, "feed")
    # Page loads leave idle kept-alive connections; gunicorn closes them after 5 s.
    wait_for(None, lambda _: connections_to_server(example) == 1, timeout=WAIT,
             message="the tabs hold more than one connection")  # fmt: skip

    for n in range(3):
        example.manage("send_event", "feed", "message", f"shared {n}")
    wait_everywhere(driver, handles, ["shared 2", "shared 1", "shared 0"])
    found = roles(driver, handles)

    print(
        f"{TABS} tabs: {connections_to_server(example)} connection; roles {sorted(found.values())}"
    )
    assert sorted(found.values()) == ["follower"] * (TABS - 1) + ["leader"]
    assert connections_to_server(example) == 1


def test_closing_the_leader_tab_hands_over_with_no_event_lost(example, browser):
    driver = browser()
    handles, leader = tabs_with_a_first_event(driver, example, 3, "before")

    driver.switch_to.window(leader)
    driver.close()
    closed = time.monotonic()
    example.manage("send_event", "feed", "message", "during")  # while nobody may hold it
    others = [handle for handle in handles if handle != leader]
    wait_for(driver, lambda d: "leader" in roles(d, others).values(),
             message="no tab took the connection over")  # fmt: skip
    handover = time.monotonic() - closed
    example.manage("send_event", "feed", "message", "after")
    wait_everywhere(driver, others, ["after", "during", "before"])

    print(f"hand-over after the leader tab closed: {handover:.2f} s")
    assert handover < 5
    for handle in others:
        assert texts(driver, handle) == ["after", "during", "before"]  # once each


def test_json_events_arrive_parsed_and_plain_text_as_it_is(example, browser):
    driver = browser()
    [handle] = open_tabs(driver, example, 1)
    wait_subscribed(example, "feed")
    driver.execute_script(
        "const form = document.getElementById('feed-form');"
        "form.elements.author.value = 'Ada'; form.elements.text.value = 'from the form';"
        "form.requestSubmit();"
    )
    example.manage("send_event", "feed", "message", "from a shell")
    wait_for(driver, lambda d: len(texts(d, handle)) == 2, message="the two messages never came")

    log = driver.execute_script("return sseLog.map((e) => [e.parsed, e.data])")
    assert sorted(kind for kind, _ in log) == ["object", "string"]
    assert texts(driver, handle) == ["from a shell", "from the form"]


def test_a_stream_reset_reaches_the_pages_callback(example, browser):
    """Redis loses the feed's history while the leader tab closes: the new leader's resume is reset."""
    driver = browser()
    handles, leader = tabs_with_a_first_event(driver, example, 2, "kept")
    [other] = [handle for handle in handles if handle != leader]
    with example.redis.client() as client:
        client.flushall()  # the history the follower's last id points into is gone

    driver.switch_to.window(leader)
    driver.close()
    driver.switch_to.window(other)
    wait_for(driver, lambda d: d.execute_script("return window.sseResets.length") >= 1,
             message="the stream-reset never reached onReset")  # fmt: skip

    assert driver.execute_script("return window.sseResets") == [["feed"]]


def test_a_refused_leader_gives_the_connection_up_and_a_tab_opened_later_reads_events(
    servers, example_kind, browser
):
    """SSE_MAX_STREAMS full: the leader's stream gets a 503; once a slot is free, a tab opened then reads events.

    EventSource never retries after a 503: a leader that kept the Web Lock
    would leave every later tab a follower of no connection.
    """
    redis = servers.redis()
    example = Example(
        redis=redis,
        server=serve_example(
            servers, example_kind, redis.url, settings="tests.browser.one_stream_settings"
        ),
    )
    holder = SseClient.connect(example.server.port, "/clock/events/", timeout=WAIT)
    assert holder.status == 200  # the one stream SSE_MAX_STREAMS = 1 allows
    driver = browser()
    try:
        driver.get(example.url + "/feed/")
        wait_for(driver, lambda d: d.execute_script("return window.feedStream?.state") == "closed",
                 message="the full server's 503 never closed the leader's stream")  # fmt: skip
    finally:
        holder.close()  # the slot is free again
    driver.switch_to.new_window("tab")
    driver.get(example.url + "/feed/")
    later = driver.current_window_handle
    wait_for(driver, lambda d: d.execute_script("return window.feedStream?.state") == "open",
             message="the tab opened later never read a stream")  # fmt: skip
    wait_subscribed(example, "feed")
    example.manage("send_event", "feed", "message", "after the refusal")

    wait_everywhere(driver, driver.window_handles, ["after the refusal"])
    assert texts(driver, later) == ["after the refusal"]
    assert sorted(roles(driver, driver.window_handles).values()) == ["follower", "leader"]
