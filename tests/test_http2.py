"""The library's views over HTTP/2: gunicorn 27's ``--http-protocols h2,h1`` (TLS), an HTTP/2 client.

gunicorn's gevent worker and the library's (which hands TLS connections to
gunicorn's own code) serve HTTP/2; httpx with h2 is the client. Over HTTP/2
one TCP connection carries every stream, so the library must not take the
connection's own frames for its client leaving: a first version ended every
stream right after its first event.
"""

from __future__ import annotations

import contextlib
import ssl
import time

import httpx
import pytest

from tests.support.h2_client import H2Connection
from tests.support.polling import eventually
from tests.support.sse import spread_retry
from tests.support.tls import make_certificates

pytestmark = pytest.mark.integration

#: Each server kind: the application and gunicorn's worker class.
SERVERS = {
    "gevent": ("tests.wsgi:application", "gevent"),
    "worker": ("tests.wsgi:application", "django_sse.worker.GeventWorker"),
    "asgi": ("tests.asgi:application", "asgi"),  # gunicorn's own ASGI worker
}


def start_h2(servers, tmp_path, kind: str):
    app, worker_class = SERVERS[kind]
    return servers.gunicorn_h2(
        certificates=make_certificates(tmp_path),
        app=app,
        worker_class=worker_class,
        extra_args=["--graceful-timeout", "10"],
        env={"DJANGO_SSE_TEST_HEARTBEAT": "0.3"},
    )


@pytest.fixture(params=list(SERVERS))
def h2_server(request, servers, tmp_path):
    """gunicorn with HTTP/2 over TLS: its gevent worker, the library's, or its ASGI worker."""
    return start_h2(servers, tmp_path, request.param)


@pytest.fixture(params=["asgi", "hypercorn", "granian"])
def multiplexing_server(request, servers, tmp_path):
    """A server that serves the streams of one HTTP/2 connection side by side."""
    if request.param == "asgi":
        return start_h2(servers, tmp_path, "asgi")
    return servers.asgi_h2(
        request.param,
        certificates=make_certificates(tmp_path),
        env={"DJANGO_SSE_TEST_HEARTBEAT": "0.3"},
    )


@pytest.fixture(params=["gevent", "worker"])
def h2_gevent_server(request, servers, tmp_path):
    """gunicorn with HTTP/2 over TLS on a gevent worker (gunicorn's or the library's)."""
    return start_h2(servers, tmp_path, request.param)


@pytest.fixture
def h2_asgi_server(servers, tmp_path):
    """gunicorn with HTTP/2 over TLS on its own ASGI worker."""
    return start_h2(servers, tmp_path, "asgi")


def h2_client(server) -> httpx.Client:
    context = ssl.create_default_context(cafile=server.ca)
    return httpx.Client(http2=True, verify=context, timeout=10, base_url=server.url)


class Body:
    """The body of a streamed response, read event by event and then to its end."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_bytes()
        self.pending = b""

    def events(self, count: int) -> tuple[list[str], list[float]]:
        """Return the data of the next ``count`` events and the time each arrived."""
        data: list[str] = []
        arrivals: list[float] = []
        while len(data) < count:
            if b"\n\n" not in self.pending:
                self.pending += next(self.chunks)
                continue
            event, self.pending = self.pending.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    data.append(line[len(b"data: ") :].decode())
                    arrivals.append(time.monotonic())
        return data, arrivals

    def rest(self) -> bytes:
        """Return what is left until the response ends (an error if it is reset instead)."""
        return self.pending + b"".join(self.chunks)


def stream_count(server) -> int:
    with h2_client(server) as client:
        return int(client.get("/stats/").json()["streams"])


def test_a_stream_over_http2_goes_on_after_its_first_event(h2_server):
    """``/ticks/`` over HTTP/2: tick after tick on one response, as over HTTP/1.1."""
    with h2_client(h2_server) as client, client.stream("GET", "/ticks/?interval=0.05") as response:
        ticks, _ = Body(response).events(20)

    assert response.http_version == "HTTP/2"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert ticks == [str(n) for n in range(20)]


def test_each_event_is_flushed_as_it_is_produced_over_http2(h2_server):
    """Three ticks 0.4 s apart arrive 0.4 s apart, not together at the end of the response."""
    with h2_client(h2_server) as client:
        with client.stream("GET", "/ticks/?interval=0.4&n=3") as response:
            ticks, arrivals = Body(response).events(3)

    assert ticks == ["0", "1", "2"]
    assert arrivals[2] - arrivals[0] > 0.6


def test_an_http2_stream_ends_when_its_client_closes_the_connection(h2_server):
    """A client that closes its connection: the stream is released at the next heartbeat."""
    client = h2_client(h2_server)
    with client.stream("GET", "/ticks/?interval=600") as response:
        assert Body(response).events(1)[0] == ["0"]
        assert stream_count(h2_server) == 1
    client.close()

    assert eventually(lambda: stream_count(h2_server), what="streams", until=lambda n: n == 0) == 0


def test_term_ends_an_http2_stream_cleanly(h2_server):
    """TERM the master: the HTTP/2 stream ends with its retry hint, and the worker exits by itself."""
    with h2_client(h2_server) as client, client.stream("GET", "/ticks/?interval=0.2") as response:
        body = Body(response)
        body.events(2)
        workers = h2_server.worker_pids()
        h2_server.term()
        rest = body.rest()

    assert spread_retry(rest) is not None
    h2_server.process.wait(15)
    assert h2_server.process.returncode == 0
    assert h2_server.killed_workers(workers) == []


def test_gunicorn_warns_that_its_gevent_worker_serves_an_http2_connections_streams_in_turn(
    h2_gevent_server,
):
    """W005 at start: one HTTP/2 connection's requests are answered one after another."""
    text = eventually(h2_gevent_server.stderr_text, until=lambda text: "django_sse.W005" in text)

    assert "one after another" in text and "--http-protocols h1" in text


def test_the_asgi_worker_does_not_warn_about_http2(h2_asgi_server):
    """gunicorn's ASGI worker serves the streams of one HTTP/2 connection side by side: no W005."""
    with h2_client(h2_asgi_server) as client:
        client.get("/stats/")

    assert "django_sse.W005" not in h2_asgi_server.stderr_text()


def test_eight_streams_share_one_http2_connection(multiplexing_server):
    """Eight tabs' worth of streams over one connection: each gets its own ticks, side by side."""
    with h2_client(multiplexing_server) as client:
        with contextlib.ExitStack() as stack:
            responses = [
                stack.enter_context(client.stream("GET", f"/ticks/?interval=0.1&tab={n}"))
                for n in range(8)
            ]
            bodies = [Body(response) for response in responses]
            ticks = [body.events(3)[0] for body in bodies]
            connections = {id(response.extensions["network_stream"]) for response in responses}

    assert ticks == [["0", "1", "2"]] * 8
    assert len(connections) == 1


def test_a_stream_its_client_resets_is_released_while_the_connection_stays(multiplexing_server):
    """RST_STREAM on one of two streams of a connection that goes on: the server drops that stream."""
    connection = H2Connection(multiplexing_server.port, multiplexing_server.ca)
    try:
        kept, reset = connection.get("/ticks/?interval=600"), connection.get("/ticks/?interval=600")
        connection.read_until(kept, b"data: 0")
        connection.read_until(reset, b"data: 0")
        assert stream_count(multiplexing_server) == 2
        connection.reset(reset)
        count = eventually(
            lambda: stream_count(multiplexing_server), what="streams", until=lambda n: n == 1
        )
        still_beating = connection.read_until(kept, b"data: 0\n\n:\n\n")  # its heartbeat goes on
    finally:
        connection.close()

    assert count == 1
    assert still_beating.endswith(b":\n\n")


def test_hypercorn_and_granian_stream_each_event_as_produced(servers, tmp_path):
    """Under hypercorn and granian over HTTP/2: ticks go on, each flushed as it is produced."""
    certificates = make_certificates(tmp_path)
    for kind in ("hypercorn", "granian"):
        server = servers.asgi_h2(kind, certificates=certificates)
        with h2_client(server) as client:
            with client.stream("GET", "/ticks/?interval=0.4&n=3") as response:
                ticks, arrivals = Body(response).events(3)

        assert response.http_version == "HTTP/2", kind
        assert ticks == ["0", "1", "2"], kind
        assert arrivals[2] - arrivals[0] > 0.6, kind
