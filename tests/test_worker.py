"""The optional worker, ``gunicorn -k django_sse.worker.GeventWorker``: its short path and its hand-off.

The short path answers plain bodiless GET/HEAD requests; everything else must
reach gunicorn's own code with nothing lost. The server is the one a user
runs: the installed package, no config file. (``scripts/test`` also runs one
combination of the streaming, replay and shutdown suites under this worker.)
"""

from __future__ import annotations

import gc
import http.client
import json
import socket
import subprocess
import sys
import time

import pytest

from django_sse.servers.http1 import Limits, head_is_doomed, parse_simple_head
from tests.support.polling import eventually
from tests.support.redis_helpers import connect, get_stats, stats_when, wait_position
from tests.support.servers import REPO_TOP
from tests.support.sse import SseClient

WORKER = "django_sse.worker.GeventWorker"
PLAIN = b"GET /events/x/ HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nLast-Event-ID: 5"


# The head parser -----------------------------------------------------------


def test_a_plain_get_is_parsed_with_upper_cased_header_names():
    head = parse_simple_head(PLAIN, Limits())

    assert head is not None
    assert (head.method, head.target, head.protocol) == ("GET", "/events/x/", "HTTP/1.1")
    assert head.headers == [("HOST", "a"), ("ACCEPT", "text/event-stream"), ("LAST-EVENT-ID", "5")]


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /x HTTP/1.1\r\nHost: a",  # a method with a body
        b"GET /x HTTP/1.1\r\nContent-Length: 3",  # a body
        b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"GET /x HTTP/1.1\r\nExpect: 100-continue",
        b"GET /x HTTP/1.1\r\nUpgrade: h2c",
        b"GET /x HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4",  # underscore: gunicorn drops it
        b"GET /x HTTP/1.1\r\nX-A: 1\r\n continued",  # obsolete line folding
        b"GET /x HTTP/1.1\r\nX-A : 1",  # whitespace before the colon
        b"GET /x HTTP/1.1\r\nX-A: a\x00b",  # a control character
        b"GET http://a/x HTTP/1.1\r\nHost: a",  # absolute form
        b"GET /x HTTP/2.0\r\nHost: a",
        b"GET /x  HTTP/1.1\r\nHost: a",
        b"GET /a#b HTTP/1.1\r\nHost: a",
        b"GET /x HTTP/1.1\r\nX-Forwarded-Proto: https",  # excluded below: a trusted-proxy header
        b"GET /" + b"a" * 5000 + b" HTTP/1.1",  # longer than limit_request_line
        b"GET /x HTTP/1.0\r\nHost: a",  # HTTP/1.0: keep-alive rules of its own
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b",  # a repeated singleton field
        b"GET /x HTTP/1.1\r\nConnection: close, te",  # a Connection list
        b"GET /x HTTP/1.1\r\nTE: trailers",
        b"GET /x HTTP/1.1\r\nX-A: a\x0bb",  # VT
        b"GET /x HTTP/1.1\r\nX-A: a\x7fb",  # DEL
        b"GET /x HTTP/1.1\r\nX-A: a\rb",  # a bare CR
        b"GET /x HTTP/1.1\r\nX-A: " + b"a" * (8190 - 5 - 2),  # a field at gunicorn's limit
        b"GET /x HTTP/1.1" + b"\r\nX-A: 1" * 100,  # 101 fields with Host: at the limit
    ],
)
def test_anything_but_a_plain_bodiless_get_is_left_to_gunicorn(raw):
    assert parse_simple_head(raw, Limits(excluded=frozenset({"X-FORWARDED-PROTO"}))) is None


def test_requests_just_short_of_gunicorns_limits_are_plain():
    """A field one byte short of limit_request_field_size, and 99 fields besides Host."""
    field = b"X-A: " + b"a" * (8190 - 5 - 3)
    assert parse_simple_head(b"GET /x HTTP/1.1\r\n" + field, Limits()) is not None
    assert parse_simple_head(b"GET /x HTTP/1.1" + b"\r\nX-A: 1" * 99, Limits()) is not None


@pytest.mark.parametrize(
    ("buffer", "doomed"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r", False),  # a CRLF cut in two
        (b"GET / HTTP/1.1\r\nHost", False),
        (b"GET / HTTP/1.1\nHost: a", True),  # a bare LF
        (b"GET / HTTP/1.1\r\nX: a\rb", True),  # a bare CR
        (b"GET / HTTP/1.1\r\r\n", True),
    ],
)
def test_a_head_that_can_never_be_plain_is_handed_over_before_it_ends(buffer, doomed):
    assert head_is_doomed(buffer) is doomed


# The worker, as users run it -------------------------------------------------


@pytest.fixture(scope="module")
def worker_site(module_servers, redis_server):
    return module_servers.site(
        redis_server.url, worker_class=WORKER, extra_args=["--keep-alive", "5"]
    )


def _echo(connection: http.client.HTTPConnection, method="GET", path="/echo/", **kwargs) -> dict:
    connection.request(method, path, **kwargs)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    return json.loads(response.read())


def test_the_worker_class_really_serves(worker_site):
    """The stats of the worker name its class: the tests below run the library's worker."""
    assert get_stats(worker_site.port)["worker_class"] == WORKER


def test_a_stream_opens_on_the_short_path_with_its_headers_and_first_chunk(worker_site):
    before = get_stats(worker_site.port)["short_path_requests"]
    client = SseClient.connect(worker_site.port, "/ticks/")
    try:
        after = get_stats(worker_site.port)["short_path_requests"]
        assert after == before + 2  # the stream, and the second /stats/
        assert client.status == 200
        assert client.headers["Content-Type"].startswith("text/event-stream")
        assert client.headers["Transfer-Encoding"] == "chunked"
        assert client.chunks and client.chunks[0][1].startswith(b"retry:")
        assert client.read_events(2, timeout=10)
    finally:
        client.close()


def test_replay_and_live_events_reach_a_stream_on_the_short_path(worker_site):
    client = connect(worker_site.port, "/events/shortpath/")
    start = wait_position(client)
    client.close()
    connection = http.client.HTTPConnection("127.0.0.1", worker_site.port, timeout=10)
    for n in range(3):  # POSTs: gunicorn's path, on one kept-alive connection
        connection.request(
            "POST",
            "/publish/",
            body=f"event=n&data={n}&channel=shortpath",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    connection.close()
    resumed = connect(worker_site.port, "/events/shortpath/", last_event_id=start)
    try:
        assert [event.data for event in resumed.read_events(3, timeout=15)] == ["0", "1", "2"]
    finally:
        resumed.close()


def test_plain_and_other_requests_share_a_kept_alive_connection(worker_site):
    """GET (short path), POST with a body (gunicorn), then GET again, on one socket."""
    before = get_stats(worker_site.port)["short_path_requests"]
    connection = http.client.HTTPConnection("127.0.0.1", worker_site.port, timeout=10)
    try:
        first = _echo(connection, path="/echo/?a=1&b=%C3%A9")
        sock = connection.sock
        posted = _echo(
            connection, "POST", body=b"k=v" * 100, headers={"Content-Type": "text/plain"}
        )
        chunked = _echo(connection, "POST", body=iter([b"one", b"two"]), encode_chunked=True)
        last = _echo(connection, path="/echo/%7Euser/")
        assert connection.sock is sock  # never closed in between
    finally:
        connection.close()
    short = get_stats(worker_site.port)["short_path_requests"] - before

    # The first GET and the second /stats/: once a POST came, the connection stays gunicorn's.
    assert short == 2
    assert first["method"] == "GET" and first["query"] == {"a": "1", "b": "é"}
    assert first["socket"] and first["protocol"] == "HTTP/1.1"
    assert first["server"] == ["127.0.0.1", str(worker_site.port)]
    assert posted["body"] == "k=v" * 100
    # Django reads no chunked request body (it needs CONTENT_LENGTH), under any server;
    # that the next request is answered shows gunicorn consumed that body correctly.
    assert chunked["method"] == "POST"
    assert last["path"] == "/echo/~user/"


def test_pipelined_requests_are_answered_in_order(worker_site):
    with socket.create_connection(("127.0.0.1", worker_site.port), timeout=10) as sock:
        sock.sendall(
            b"GET /echo/?n=1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /echo/?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
            b"GET /echo/?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        received = _read_to_close(sock)

    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in _responses(received)]
    assert [(body["query"]["n"], body["body"]) for body in bodies] == [
        ("1", ""),
        ("2", "hi"),
        ("3", ""),
    ]


def test_a_malformed_request_gets_gunicorns_400(worker_site):
    with socket.create_connection(("127.0.0.1", worker_site.port), timeout=10) as sock:
        sock.sendall(b"GET /echo/ HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        received = _read_to_close(sock)

    assert received.startswith(b"HTTP/1.1 400 ")


def test_head_has_no_body_and_http_1_0_closes_after_its_response(worker_site):
    with socket.create_connection(("127.0.0.1", worker_site.port), timeout=10) as sock:
        sock.sendall(b"HEAD /ticks/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head_only = _read_to_close(sock)
    with socket.create_connection(("127.0.0.1", worker_site.port), timeout=10) as sock:
        sock.sendall(b"GET /plain/ HTTP/1.0\r\nHost: a\r\n\r\n")
        old = _read_to_close(sock)  # returns: the server closes the connection

    assert head_only.startswith(b"HTTP/1.1 200 ") and head_only.endswith(b"\r\n\r\n")
    assert b"text/event-stream" in head_only
    head, body = old.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and body == b"x" * 1000


def test_headers_with_underscores_and_trusted_proxy_headers_keep_gunicorns_meaning(worker_site):
    """gunicorn drops X_Custom (spoofable as X-Custom) and trusts X-Forwarded-Proto from 127.0.0.1."""
    connection = http.client.HTTPConnection("127.0.0.1", worker_site.port, timeout=10)
    try:
        dropped = _echo(connection, headers={"X_Custom": "spoof", "X-Other": "kept"})
        forwarded = _echo(connection, headers={"X-Forwarded-Proto": "https"})
        plain = _echo(connection)
    finally:
        connection.close()

    assert "HTTP_X_CUSTOM" not in dropped["http"] and dropped["http"]["HTTP_X_OTHER"] == "kept"
    assert forwarded["secure"] is True
    assert plain["secure"] is False


def test_repeated_request_headers_are_joined_as_gunicorn_joins_them(worker_site):
    with socket.create_connection(("127.0.0.1", worker_site.port), timeout=10) as sock:
        sock.sendall(
            b"GET /echo/ HTTP/1.1\r\nHost: a\r\nX-Tag: one\r\nX-Tag: two\r\nConnection: close\r\n\r\n"
        )
        received = _read_to_close(sock)

    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["http"]["HTTP_X_TAG"] == "one,two"


def test_nothing_is_left_behind_after_many_clients_on_the_short_path(worker_site):
    before = stats_when(worker_site.port, lambda stats: stats["streams"] == 0)
    for n in range(150):
        client = connect(worker_site.port, f"/events/churn{n % 3}/")
        if n % 10 == 0:
            client.abort()
        else:
            client.close()
    after = stats_when(
        worker_site.port,
        # Greenlets too: a stream's last tasks (a channel's tip read waiting for the one
        # pooled Redis connection, which the presence reporter may hold) end just after it.
        lambda stats: (
            stats["streams"] == 0
            and stats["fds"] <= before["fds"]
            and stats["greenlets"] <= before["greenlets"]
        ),
        timeout=20,
    )

    assert after["greenlets"] <= before["greenlets"]
    assert after["fds"] <= before["fds"]
    assert after["hub_channels"] == before["hub_channels"]


def test_a_stopping_worker_ends_its_streams_with_a_retry_hint(servers, redis_url):
    """TERM to the master: streams of the worker's short path end cleanly, as with -k gevent."""
    site = servers.site(redis_url, worker_class=WORKER)
    clients = [SseClient.connect(site.port, "/ticks/") for _ in range(5)]
    for client in clients:
        client.read_events(1, timeout=10)
    [worker] = site.worker_pids()
    process = site.process
    site.term()
    try:
        bodies = [client.read_to_end(timeout=10) for client in clients]
    finally:
        for client in clients:
            client.close()

    # The worker ended by itself, before gunicorn's graceful_timeout (30 s) could cut it off.
    assert process.wait(30) == 0
    assert site.killed_workers([worker]) == [] and site.forced_stops() == []
    assert all(client.completed for client in clients)
    assert all(body.rstrip().rsplit(b"\n", 1)[-1].startswith(b"retry:") for body in bodies)


def test_the_worker_class_imports_nothing_of_django_before_gevent_patches():
    """gunicorn's master imports the worker class before it forks: no Django, no asyncio yet.

    Django imported before gevent patches shares its connection wrappers
    between greenlets ("DatabaseWrapper objects created in a thread ...").
    """
    code = (
        "import sys, django_sse.worker\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'asyncio')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_TOP
    )

    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("worker_class", ["gevent", WORKER])
def test_a_gevent_worker_tunes_the_interpreter_with_no_config_file(servers, worker_class):
    """Plain ``gunicorn -k gevent`` (or the worker): heap frozen, gen-0 threshold 10000, no greenlet tree."""
    server = servers.gunicorn(worker_class=worker_class)

    stats = stats_when(server.port, lambda stats: stats["gc_freeze_count"] > 0)

    assert stats["gc_threshold"] == [10000, 50, 100]
    assert stats["greenlet_tree_tracked"] is False


def test_sse_tune_gc_false_leaves_the_collector_as_python_has_it(servers):
    """``SSE_TUNE_GC = False``: Python's thresholds are left as they are (the greenlet tree still untracked)."""
    server = servers.gunicorn(
        worker_class=WORKER, env={"DJANGO_SSE_TEST_SETTINGS": json.dumps({"SSE_TUNE_GC": False})}
    )

    stats = stats_when(server.port, lambda stats: stats["greenlet_tree_tracked"] is False)
    time.sleep(0.5)  # the library's tuning task would have run by now (it waits for the boot)
    stats = get_stats(server.port)

    assert stats["gc_threshold"] == list(gc.get_threshold())  # this process: Python's own
    assert stats["gc_threshold"] != [10000, 50, 100]


def test_a_sites_own_gc_tuning_and_greenlet_tree_are_kept(servers, tmp_path):
    """A post_worker_init that sets thresholds, and GEVENT_TRACK_GREENLET_TREE=1, win over the library's."""
    config = tmp_path / "site.conf.py"
    config.write_text(
        "import gc\n"
        "worker_class = 'gevent'\n"
        "def post_worker_init(worker):\n"
        "    gc.set_threshold(5000, 20, 30)\n"
    )
    server = servers.gunicorn(config=config, env={"GEVENT_TRACK_GREENLET_TREE": "1"})

    stats = stats_when(server.port, lambda stats: stats["gc_freeze_count"] > 0)

    assert stats["gc_threshold"] == [5000, 20, 30]
    assert stats["greenlet_tree_tracked"] is True


def test_with_an_access_log_every_request_takes_gunicorns_path_and_is_logged(servers, redis_url):
    site = servers.site(redis_url, worker_class=WORKER, extra_args=["--access-logfile", "-"])
    client = SseClient.connect(site.port, "/ticks/")
    try:
        assert client.read_events(1, timeout=10)
    finally:
        client.close()
    stats = get_stats(site.port)
    # The stream's line is written once the worker has seen the client go (a moment later).
    log = eventually(
        lambda: site.stderr_text(100_000),  # stdout and stderr
        until=lambda text: '"GET /ticks/ HTTP/1.1" 200' in text,
        what="the stream's access log line",
    )

    assert stats["short_path_requests"] == 0
    assert "answers every request by gunicorn's path: an access log is written" in log


def _read_to_close(sock: socket.socket) -> bytes:
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def _responses(received: bytes) -> list[bytes]:
    """Split pipelined responses that each carry a Content-Length."""
    parts = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        parts.append(head + b"\r\n\r\n" + rest[:length])
        received = rest[length:]
    return parts


def test_with_statsd_every_request_takes_gunicorns_path(servers, redis_url):
    """statsd counts every request in gunicorn's access(): the short path would lose them."""
    site = servers.site(redis_url, worker_class=WORKER, extra_args=["--statsd-host", "127.0.0.1:9"])
    connection = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    try:
        assert _echo(connection)["method"] == "GET"
    finally:
        connection.close()

    assert get_stats(site.port)["short_path_requests"] == 0
    assert "answers every request by gunicorn's path: statsd_host is set" in site.stderr_text(
        100_000
    )
