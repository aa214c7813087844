"""docs/reference/: the settings table and sample, and the wire format's publishers and transcript, checked against the library.

The settings table is checked against ``conf.DEFAULTS``; the redis-cli call and
publisher.py publish to a real Redis; the transcript is what a stream sends,
byte for byte. api.rst and commands.rst have no samples of their own, and are
read here so that a sample added to them is flagged. Samples are looked up by a
marker they contain (tests/support/readme_samples.py);
``test_every_sample_is_exercised``, the last test, fails for any sample that no
passing test read.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from importlib import resources

import pytest
from django.test import RequestFactory

from django_sse import checks, send_event
from django_sse.conf import DEFAULTS, sse_settings
from django_sse.redisqueue import RedisQueueView
from django_sse.testing import close_response, memory_broker
from tests.support.doc_pages import REFERENCE, commands, pages_tested_by
from tests.support.doc_streams import named
from tests.support.readme_samples import Samples, track

SETTINGS_PAGE = REFERENCE / "settings.rst"

SAMPLES = Samples(*pages_tested_by(__name__))
readme_sample_reader = track(SAMPLES)  # an autouse fixture: which test read what, and passed

SETTINGS = SAMPLES.find("python", "SSE_EPHEMERAL_CHANNELS")
REDIS_CLI = SAMPLES.find("console", "redis-cli --eval")
FOREIGN_PUBLISHER = SAMPLES.find("python", "# publisher.py")
STREAM_TRANSCRIPT = SAMPLES.find("text", "X-Accel-Buffering: no")


def test_settings_table_lists_every_setting_with_its_default():
    """The Settings table has one row per setting of conf.DEFAULTS, each with the real default."""
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    table = text[text.index("   * - Setting") : text.index("For example:")]
    rows = re.findall(r"^   \* - ``(\w+)``\n     - ``(.+?)``\n", table, re.MULTILINE)
    documented = {name: ast.literal_eval(default) for name, default in rows}
    assert len(rows) == len(documented)  # no setting twice
    assert documented == DEFAULTS


def test_settings_sample_passes_the_checks_and_means_what_it_says(settings):
    """The settings sample installs the app, selects Redis, makes typing-* ephemeral; no check fails."""
    namespace: dict = {}
    exec(compile(SETTINGS.code, "<settings.rst settings.py>", "exec"), namespace)
    assert "django_sse" in namespace["INSTALLED_APPS"]
    for name, value in namespace.items():
        if name.startswith("SSE_"):
            setattr(settings, name, value)

    assert [message for check in checks.ALL_CHECKS for message in check()] == []
    assert sse_settings.broker_name == "redis"
    assert not sse_settings.history_enabled("typing-ann")
    assert sse_settings.history_enabled("orders")
    assert sse_settings.SSE_MAX_LIFETIME == 3600


@pytest.mark.integration
def test_redis_cli_sample_publishes_with_history(orders_on_redis, redis_server, tmp_path):
    """The redis-cli call of publish.lua records the event in sse:orders and a stream receives it with that id."""
    [(argv, output)] = commands(REDIS_CLI.code)
    argv = [argv[0], "-p", str(redis_server.port), *argv[1:]]
    # As the page says: the installed package's script, copied into the project
    # where the command reads it.
    script = tmp_path / argv[argv.index("--eval") + 1]
    script.parent.mkdir(parents=True)
    script.write_text(
        resources.files("django_sse.brokers.redis").joinpath("publish.lua").read_text()
    )
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    # redis-cli prints a reply's elements one per line when its output is not a terminal.
    event_id, previous_id = result.stdout.split()
    assert re.fullmatch(r"\d+-\d+", event_id) and previous_id == "0-0"  # the channel's first
    assert re.fullmatch(r'1\) "\d+-\d+"', output[0]) and output[1] == '2) "0-0"'

    [event] = [
        e for e in orders_on_redis.until(named("order-shipped")) if e.type == "order-shipped"
    ]
    assert (json.loads(event.data), event.last_event_id) == ({"id": 42}, event_id)
    with redis_server.client() as redis:
        [(entry_id, fields)] = redis.xrange("sse:orders")
        assert redis.pttl("sse:orders") > 86_000_000
    assert (entry_id.decode(), fields) == (
        event_id,
        {b"event": b"order-shipped", b"data": b'{"id": 42}'},
    )


@pytest.mark.integration
def test_foreign_publisher_sample_reaches_a_stream_with_and_without_history(
    orders_on_redis, redis_url
):
    """publisher.py publishes through publish.lua (an id) and plain PUBLISH (no id); the stream gets both."""
    code = FOREIGN_PUBLISHER.code.replace("redis://localhost:6379/0", redis_url)
    namespace: dict = {}
    exec(compile(code, "<wire-format.rst publisher.py>", "exec"), namespace)
    namespace["client"].close()

    events = orders_on_redis.until(named("typing"))
    shipped = [e for e in events if e.type == "order-shipped"]
    typing = [e for e in events if e.type == "typing"]
    assert [(json.loads(e.data), e.last_event_id) for e in shipped] == [
        ({"id": 42}, namespace["event_id"].decode())
    ]
    # Without history: no id field, so the client's last id stays the shipped event's.
    assert [(json.loads(e.data), e.last_event_id) for e in typing] == [
        ({"user": "ann"}, namespace["event_id"].decode())
    ]
    assert b"id: " not in orders_on_redis.raw.split(b"event: typing")[1]


def test_the_wire_format_page_shows_byte_for_byte_what_a_stream_sends():
    """The transcript: status, headers, opening, the start's id, the event, a heartbeat; only the ids differ."""
    head, _, body = STREAM_TRANSCRIPT.code.partition("\n\n")
    status, *header_lines = head.splitlines()
    shown_ids = re.findall(r"^id: (\S+)$", body, re.MULTILINE)
    view = RedisQueueView.as_view(redis_channel="orders", heartbeat_interval=0.2)
    with memory_broker():
        start_id = send_event("order-placed", {"id": 42}, channel="orders")
        keeper = view(RequestFactory().get("/orders/events/"))  # the channel is in use already
        keeper_chunks = iter(keeper.streaming_content)
        next(keeper_chunks)
        response = view(RequestFactory().get("/orders/events/"))
        chunks = iter(response.streaming_content)
        sent = [next(chunks)]
        event_id = send_event("order-shipped", {"id": 42, "carrier": "DHL"}, channel="orders")
        while not sent[-1].startswith(b":"):
            sent.append(next(chunks))
        for stream in (keeper, response):
            close_response(stream)

    assert status == f"HTTP/1.1 {response.status_code} {response.reason_phrase}"
    assert [f"{name}: {value}" for name, value in response.headers.items()] == header_lines
    expected = body
    for shown, real in zip(shown_ids, [start_id, event_id], strict=True):
        expected = expected.replace(shown, real)
    assert b"".join(sent).decode() == expected + "\n"  # the sample's last blank line is cut


def test_every_sample_is_exercised(request):
    """Every code block of this module's pages was read by a test of this module that passed; this test runs last."""
    SAMPLES.check(request)
