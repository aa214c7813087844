"""Prometheus metrics: the values, in one process (the test client) and over a 2-worker gunicorn.

In-process tests read prometheus_client's default registry and compare
before and after (the registry lives as long as the test process). The
server test scrapes ``metrics_view`` of a real gunicorn with 2 workers in
prometheus_client's multiprocess mode, while clients connect, receive,
resume, are reset and are refused, and asserts the server-wide values.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import types
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from django.test import RequestFactory
from django.urls import resolve
from prometheus_client import REGISTRY

from django_sse import metrics, send_event
from django_sse.testing import StreamTimeout, memory_broker, sse_stream
from tests.support.polling import eventually
from tests.support.readme_samples import Samples, track
from tests.support.redis_helpers import connect, wait_position
from tests.support.servers import REPO_TOP


def value(name: str, **labels: str) -> float:
    """The current value of a sample of the default registry (0 when absent)."""
    metrics.flush()
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


class Delta:
    """Samples read now, to compare with later: ``delta.of(name, **labels)``."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.before = {
            (name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples
        }

    def of(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self.before[(name, tuple(sorted(labels.items())))]


# --- in one process ----------------------------------------------------------------


def test_a_stream_counts_its_opening_events_bytes_and_end_reason(client):
    """Opened, open while it runs, 3 events delivered, bytes counted, ended "client gone"."""
    view = "channel"
    delta = Delta(
        ("django_sse_streams_opened_total", {"view": view}),
        ("django_sse_streams_open", {"view": view}),
        ("django_sse_streams_ended_total", {"view": view, "reason": "client gone"}),
        ("django_sse_events_delivered_total", {}),
        ("django_sse_bytes_sent_total", {}),
        ("django_sse_events_published_total", {}),
    )
    with memory_broker(), sse_stream(client, "/events/counted/") as stream:
        open_while_streaming = delta.of("django_sse_streams_open", view=view)
        for index in range(3):
            send_event("tick", str(index), channel="counted")
        events = stream.read_events(3)

    assert [event.data for event in events] == ["0", "1", "2"]
    assert open_while_streaming == 1
    assert delta.of("django_sse_streams_open", view=view) == 0
    assert delta.of("django_sse_streams_opened_total", view=view) == 1
    assert delta.of("django_sse_streams_ended_total", view=view, reason="client gone") == 1
    assert delta.of("django_sse_events_delivered_total") == 3
    assert delta.of("django_sse_events_published_total") == 3
    assert delta.of("django_sse_bytes_sent_total") >= sum(len(f"data: {i}") for i in range(3))


def test_an_iterator_views_events_and_its_finishing_are_counted(client):
    """BaseSseView: every add_message() counts once; the end is "iterator finished"."""
    view = "ticks"
    delta = Delta(
        ("django_sse_events_delivered_total", {}),
        ("django_sse_streams_ended_total", {"view": view, "reason": "iterator finished"}),
    )
    with sse_stream(client, "/ticks/?n=4&interval=0") as stream:
        stream.read_events(4)
        with pytest.raises(StreamTimeout, match="it ended"):
            stream.read_events(1, timeout=5)  # the iterator is done: so is the stream
    assert delta.of("django_sse_events_delivered_total") == 4
    assert delta.of("django_sse_streams_ended_total", view=view, reason="iterator finished") == 1


def test_refusals_are_counted_by_status(client, settings):
    """403 for a channel the view refuses, 400 for a bad channel name, 503 past SSE_MAX_STREAMS."""
    view_path = "tests.views.GuardedChannelView"
    delta = Delta(
        ("django_sse_streams_refused_total", {"view": view_path, "status": "403"}),
        ("django_sse_streams_refused_total", {"view": "channel", "status": "400"}),
        ("django_sse_streams_refused_total", {"view": "channel", "status": "503"}),
    )
    settings.SSE_MAX_STREAMS = 0  # before memory_broker(): see its pitfall
    with memory_broker():
        assert client.get("/guarded/?channel=secret-plans").status_code == 403
        assert client.get("/events/bad%20name/").status_code == 400
        assert client.get("/events/full/").status_code == 503

    assert delta.of("django_sse_streams_refused_total", view=view_path, status="403") == 1
    assert delta.of("django_sse_streams_refused_total", view="channel", status="400") == 1
    assert delta.of("django_sse_streams_refused_total", view="channel", status="503") == 1


def test_replays_and_resets_are_counted_with_their_cause(client):
    """Resuming replays count per event; a foreign id is "malformed id", a forged one "unknown position"."""
    delta = Delta(
        ("django_sse_replayed_events_total", {}),
        ("django_sse_stream_resets_total", {"cause": "malformed id"}),
        ("django_sse_stream_resets_total", {"cause": "unknown position"}),
    )
    with memory_broker():
        first = send_event("tick", "a", channel="resumed")
        send_event("tick", "b", channel="resumed")
        send_event("tick", "c", channel="resumed")
        with sse_stream(client, "/events/resumed/", last_event_id=first) as stream:
            assert [event.data for event in stream.read_events(2)] == ["b", "c"]
        with sse_stream(client, "/events/resumed/", last_event_id="chan:17,other") as stream:
            [reset] = stream.read_events(1)
        with sse_stream(client, "/events/resumed/", last_event_id="99999999999999-0") as stream:
            [forged] = stream.read_events(1)

    assert (reset.type, forged.type) == ("stream-reset", "stream-reset")
    assert delta.of("django_sse_replayed_events_total") == 2
    assert delta.of("django_sse_stream_resets_total", cause="malformed id") == 1
    assert delta.of("django_sse_stream_resets_total", cause="unknown position") == 1


def test_a_trimmed_position_is_a_reset_of_cause_trimmed(client, settings):
    """Past SSE_HISTORY_MAXLEN, an old id is gone: the reset says "trimmed"."""
    settings.SSE_HISTORY_MAXLEN = 2
    delta = Delta(("django_sse_stream_resets_total", {"cause": "trimmed"}))
    with memory_broker():
        old = send_event("tick", "old", channel="short")
        for index in range(5):
            send_event("tick", str(index), channel="short")
        with sse_stream(client, "/events/short/", last_event_id=old) as stream:
            [reset] = stream.read_events(1)
    assert reset.type == "stream-reset"
    assert delta.of("django_sse_stream_resets_total", cause="trimmed") == 1


def test_with_sse_metrics_off_nothing_is_recorded(client, settings):
    """SSE_METRICS = False: a whole stream leaves every metric as it was; the endpoint answers 404."""
    delta = Delta(
        ("django_sse_streams_opened_total", {"view": "channel"}),
        ("django_sse_events_published_total", {}),
        ("django_sse_events_delivered_total", {}),
    )
    settings.SSE_METRICS = False
    with memory_broker(), sse_stream(client, "/events/unmeasured/") as stream:
        send_event("tick", "x", channel="unmeasured")
        stream.read_events(1)
    response = client.get("/metrics/")
    metrics.flush()  # while off: what the writes added is dropped, not kept for later
    settings.SSE_METRICS = True

    assert response.status_code == 404
    assert delta.of("django_sse_streams_opened_total", view="channel") == 0
    assert delta.of("django_sse_events_published_total") == 0
    assert delta.of("django_sse_events_delivered_total") == 0


def test_without_prometheus_client_nothing_is_imported_and_streams_work(tmp_path):
    """In a process where prometheus_client cannot be imported: streams stream, metrics are off, nothing imported."""
    program = textwrap.dedent(
        """
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "prometheus_client" or name.startswith("prometheus_client."):
                    raise ImportError("blocked for this test")
                return None

        sys.meta_path.insert(0, Block())
        import django
        django.setup()
        from django.test import Client
        from django_sse import metrics, send_event
        from django_sse.testing import memory_broker, sse_stream

        client = Client()
        with memory_broker(), sse_stream(client, "/events/plain/") as stream:
            send_event("tick", "works", channel="plain")
            [event] = stream.read_events(1)
        print(event.data, metrics.enabled(), "prometheus_client" in sys.modules,
              client.get("/metrics/").status_code)
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_TOP), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.stdout.split() == ["works", "False", "False", "404"], result.stderr


# --- a server of two workers ---------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return the samples of /metrics/ as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or "")))
        samples[match.group(1), labels] = float(match.group(3))
    return samples


def stats_of_a_worker(server) -> tuple[int, int]:
    """The pid and open streams of whichever worker answers /stats/."""
    with urllib.request.urlopen(f"{server.url}/stats/", timeout=10) as response:
        stats = json.loads(response.read())
    return stats["pid"], stats["streams"]


def sample(samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels`` (over pids, views, ...)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.mark.integration
def test_one_scrape_of_either_worker_reports_the_whole_server(
    servers, redis_url, settings, tmp_path
):
    """2 workers, multiprocess mode: streams, deliveries, replays, resets, refusals and open streams add up."""
    settings.SSE_REDIS_URL = redis_url
    directory = tmp_path / "prometheus"
    directory.mkdir()
    server = servers.site(
        redis_url, heartbeat="1", workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    )
    channel = f"scraped-{time.monotonic_ns()}"
    clients = [connect(server.port, f"/events/{channel}/") for _ in range(6)]
    for client in clients:
        wait_position(client)
    ids = [send_event("tick", str(index), channel=channel) for index in range(5)]
    for client in clients:
        assert [event.data for event in client.read_events(5)] == ["0", "1", "2", "3", "4"]
    clients[0].close()
    with connect(server.port, f"/events/{channel}/", ids[1]) as resumed:
        assert [event.data for event in resumed.read_events(3)] == ["2", "3", "4"]
    with connect(server.port, f"/events/{channel}/", "not-an-id") as reset:
        [event] = reset.read_events(1)
        assert event.type == "stream-reset"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/guarded/?channel=secret", timeout=10)
    assert refused.value.code == 403

    def whole_server():
        samples = scrape(server.port)
        return (
            sample(samples, "django_sse_streams_open", view="channel"),
            sample(samples, "django_sse_streams_opened_total", view="channel"),
            sample(samples, "django_sse_events_delivered_total"),
            sample(samples, "django_sse_replayed_events_total"),
            sample(samples, "django_sse_stream_resets_total", cause="malformed id"),
            sample(samples, "django_sse_streams_refused_total", status="403"),
            # Per worker (a worker that has served no stream has not subscribed).
            sorted(v for (n, _), v in samples.items() if n == "django_sse_broker_connected")[-1:],
        )

    # 5 left open of 6, then 2 more opened and closed; 6 x 5 live + 3 replayed.
    expected = (5.0, 8.0, 33.0, 3.0, 1.0, 1.0, [1.0])
    eventually(whole_server, timeout=10, until=lambda found: found == expected, what="the totals")
    pids = {int(pid) for pid in server.worker_pids()}
    assert len(pids) == 2

    # A worker killed: its open streams leave the gauge at the next scrape.
    for client in clients[1:]:
        client.close()
    eventually(
        lambda: sample(scrape(server.port), "django_sse_streams_open"),
        until=lambda found: found == 0,
        what="no stream open",
    )
    kept = [connect(server.port, f"/events/{channel}/") for _ in range(4)]
    for client in kept:
        wait_position(client)
    victim, victims_streams = eventually(
        lambda: stats_of_a_worker(server),
        until=lambda found: found[1] > 0,
        what="a worker holding streams",
    )
    assert victim in pids
    os.kill(victim, signal.SIGKILL)
    try:

        def after_a_scrape():
            open_now = sample(scrape(server.port), "django_sse_streams_open")
            return open_now, sorted(n for n in os.listdir(directory) if n.endswith(f"_{victim}.db"))

        # A scrape removes the live gauges of a worker that is gone; its counters stay.
        open_now, files = eventually(
            after_a_scrape,
            timeout=20,
            until=lambda found: not any("live" in name for name in found[1]),
            what="the killed worker's live gauges removed by a scrape",
        )
        assert open_now == 4 - victims_streams and files, (open_now, files)
    finally:
        for client in kept:
            client.close()


# --- the operations page's samples --------------------------------------------------------

PAGE = REPO_TOP / "docs" / "guides" / "operations.rst"
SAMPLES = Samples(PAGE)
operations_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

PIP_INSTALL = SAMPLES.find("console", "django-sse[redis,metrics]")
URLS = SAMPLES.find("python", "# mysite/urls.py")
LOGGING_SAMPLE = SAMPLES.find("python", "LOGGING = {")


def test_the_pip_command_installs_the_extras_that_exist():
    """``django-sse[redis,metrics]``: both extras are setup.cfg's, and metrics holds prometheus_client."""
    [line] = PIP_INSTALL.code.splitlines()
    extras = re.fullmatch(r'\$ pip install "django-sse\[([\w,]+)\]"', line).group(1).split(",")
    setup = configparser.ConfigParser()
    setup.read(REPO_TOP / "setup.cfg")
    assert extras == ["redis", "metrics"]
    assert all(extra in setup["options.extras_require"] for extra in extras)
    assert setup["options.extras_require"]["metrics"].split()[0].startswith("prometheus_client")


def test_the_urls_sample_serves_the_metrics_to_staff_only(client, settings):
    """Anonymous visitors are sent to LOGIN_URL; a staff member gets the Prometheus text."""
    module = types.ModuleType("mysite_urls_sample")
    exec(compile(URLS.code, str(PAGE), "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    try:
        settings.ROOT_URLCONF = module.__name__
        anonymous = client.get("/metrics/")
        staff = SimpleNamespace(is_active=True, is_staff=True, is_authenticated=True)
        request = RequestFactory().get("/metrics/")
        request.user = staff
        response = resolve("/metrics/").func(request)
    finally:
        del sys.modules[module.__name__]

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(settings.LOGIN_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"# TYPE django_sse_streams_open gauge" in response.content


def test_the_logging_sample_shows_each_streams_end(tmp_path):
    """With the sample's LOGGING, a stream's end is one DEBUG line with its view, channels, reason and duration."""
    program = (
        "import logging.config\n"
        + LOGGING_SAMPLE.code
        + "logging.config.dictConfig(LOGGING)\n"
        + "from django_sse import metrics\n"
        + "metrics.record_stream_ended('news', 'client gone', ['a', 'b'], 12.34)\n"
        + "logging.getLogger('django_sse.core.hub').debug('not shown: the hub stays at WARNING')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_TOP), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + program],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.stderr.splitlines() == [
        "Stream ended: view news, channels a,b, client gone after 12.3 s."
    ], result.stderr


def test_every_sample_is_exercised(request):
    """Every code block of docs/guides/operations.rst was read by a passing test; this test runs last."""
    SAMPLES.check(request)
