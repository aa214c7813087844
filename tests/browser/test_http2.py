"""Chromium over HTTP/2: eight tabs of one origin, each with its own stream, over one connection.

gunicorn's own ASGI worker serves HTTP/2 over TLS (a test CA, which
Chromium is told to accept) and answers the streams of one connection side
by side; HTTP/1.1's six connections per origin would have stopped the
seventh and eighth tabs.
"""

from __future__ import annotations

import pytest

from tests.browser.fixtures import text_of, wait_for
from tests.support.polling import eventually
from tests.support.procfs import established_to_port
from tests.support.tls import make_certificates

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TABS = 8


def test_eight_tabs_stream_side_by_side_over_one_http2_connection(servers, tmp_path, browser):
    server = servers.gunicorn_h2(
        certificates=make_certificates(tmp_path),
        app="tests.asgi:application",
        worker_class="asgi",
    )
    driver = browser("--ignore-certificate-errors")
    for tab in range(TABS):
        if tab:
            driver.switch_to.new_window("tab")
        driver.get(f"{server.url}/eventsource-page/")
    protocol = driver.execute_script(
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol"
    )
    counts = []
    for handle in driver.window_handles:
        driver.switch_to.window(handle)
        wait_for(driver, lambda d: int(text_of(d, "count")) >= 3, message="a tab's ticks")
        counts.append(int(text_of(driver, "count")))
    # The server's own probe at start-up may linger a moment; Chromium's connections stay.
    connections = eventually(
        lambda: established_to_port(server.port), until=lambda n: n <= 1, what="connections"
    )

    assert protocol == "h2"
    assert len(counts) == TABS and min(counts) >= 3
    assert connections == 1
