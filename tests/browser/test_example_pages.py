"""The example's job progress and per-object pages in headless Chromium, on Redis and without it.

Screenshots of every window go to test-output/screenshots/ (see fixtures.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.browser.fixtures import (
    crash,
    example_env,
    logged,
    serve_example,
    text_of,
    wait_for,
    wait_open,
    wait_subscribed,
)
from tests.support.servers import REPO_TOP

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def percents(driver):
    return [json.loads(event["data"])["percent"] for event in logged(driver, "progress")]


def test_job_run_from_another_process_moves_the_progress_bar(example, browser):
    """`manage.py run_job ID` publishes progress from its own process; the job's page fills its bar to 100%."""
    driver = browser()
    driver.get(example.url + "/jobs/")
    field = driver.find_element(By.NAME, "job_id")
    field.clear()
    field.send_keys("nightly-report")
    field.submit()
    wait_for(driver, lambda d: d.current_url.endswith("/jobs/nightly-report/"))
    wait_open(driver)
    wait_subscribed(example, "job-nightly-report")
    assert "python example/manage.py run_job nightly-report" in driver.page_source

    output = example.manage("run_job", "nightly-report", "--steps", "5", "--delay", "0.2")

    wait_for(driver, lambda d: text_of(d, "job-state") == "done", message="the job never finished")
    assert percents(driver) == [20, 40, 60, 80, 100]
    assert driver.find_element(By.ID, "bar").get_attribute("style") == "width: 100%;"
    assert "nightly-report: step 5/5 (100%)" in output


def test_without_redis_the_job_page_says_so_and_runs_the_job_in_the_server(
    servers, browser, example_kind
):
    """On the in-process broker the page explains why, its button runs the job in the server, and the command refuses."""
    server = serve_example(servers, example_kind, "")
    driver = browser()
    driver.get(server.url + "/jobs/local-job/")
    wait_open(driver)
    assert "cannot reach this page" in driver.find_element(By.CLASS_NAME, "note").text
    assert text_of(driver, "broker") == "in-process (memory)"

    driver.find_element(By.CSS_SELECTOR, "#start-form button").click()

    wait_for(driver, lambda d: text_of(d, "job-state") == "done", timeout=40, message="no progress")
    assert percents(driver) == [round(100 * step / 20) for step in range(1, 21)]
    refused = subprocess.run(
        [sys.executable, "example/manage.py", "run_job", "local-job"],
        cwd=REPO_TOP,
        env={**example_env(""), "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "in-process broker cannot reach the web server" in refused.stderr


def test_each_object_page_gets_its_own_channel_and_its_history(example, browser):
    """Two objects' pages get only their own changes; a reload replays the object's history; unknown objects get 403."""
    driver = browser()
    driver.get(example.url + "/objects/1/")
    wait_open(driver)
    first = driver.current_window_handle
    driver.switch_to.new_window("window")
    driver.get(example.url + "/objects/2/")
    wait_open(driver)
    wait_subscribed(example, "object-1")
    wait_subscribed(example, "object-2")

    # Object 2 through its page's form (the view calls send_event)...
    Select(driver.find_element(By.NAME, "status")).select_by_visible_text("shipped")
    driver.find_element(By.NAME, "note").send_keys("Zoë's parcel 📦")
    driver.find_element(By.CSS_SELECTOR, "#status-form button").click()
    wait_for(driver, lambda d: text_of(d, "status") == "shipped")
    # ...object 1 from another process.
    change = {"status": "packed", "note": "", "at": "2026-01-02T03:04:05Z"}
    example.manage("send_event", "object-1", "status", json.dumps(change), "--json")
    driver.switch_to.window(first)
    wait_for(driver, lambda d: text_of(d, "status") == "packed")

    assert [json.loads(e["data"])["status"] for e in logged(driver, "status")] == ["packed"]
    driver.switch_to.window(driver.window_handles[1])
    [shipped] = logged(driver, "status")
    assert json.loads(shipped["data"])["note"] == "Zoë's parcel 📦"

    driver.refresh()  # the page opens with ?lastEventId=0-0: the history comes back
    wait_for(driver, lambda d: text_of(d, "status") == "shipped")
    assert "Zoë's parcel 📦" in driver.find_element(By.ID, "history").text

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(example.url + "/objects/9/events/", timeout=10)
    assert refused.value.code == 403


def test_reconnect_page_shows_stream_reset_when_the_server_lost_the_history(
    servers, browser, example_kind
):
    """On the in-process broker a crashed worker takes the history along: the page flags stream-reset."""
    server = serve_example(servers, example_kind, "")
    driver = browser()
    driver.get(server.url + "/reconnect/")
    wait_open(driver)
    driver.find_element(By.CSS_SELECTOR, "#start-form button").click()  # publish from the server
    wait_for(driver, lambda d: int(text_of(d, "received")) >= 2, message="no sequence arrived")
    last_id = text_of(driver, "last-event-id")

    crash(server)  # a new process serves, with an empty history

    wait_for(driver, lambda d: text_of(d, "resets") == "1", message="no stream-reset shown")
    [reset] = logged(driver, "stream-reset")
    assert json.loads(reset["data"]) == {"channels": ["sequence"]}
    assert text_of(driver, "resumed-after") == last_id
    assert driver.find_element(By.ID, "verdict").get_attribute("data-ok") == "false"
    assert text_of(driver, "state") == "open"
