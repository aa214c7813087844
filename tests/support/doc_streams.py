"""Reading the streams that the docs' samples serve: in this process (``Events``) or on a socket (``RawStream``)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from io import StringIO
from types import SimpleNamespace

from django.core.management import call_command

from django_sse.conf import DEFAULTS
from django_sse.eventstream import SseParser
from django_sse.testing import close_response
from tests.support.doc_pages import commands
from tests.support.sse import spread_retry

TIMEOUT = 10.0  # seconds any awaited chunk or event may take


class Events:
    """Read the events of a streaming response, each wait bounded by a timeout."""

    def __init__(self, response) -> None:
        assert response.status_code == 200, response.content
        self.response = response
        self.parser = SseParser()
        self.events: list = []
        self.raw = b""
        self.ended = False
        self._chunks = iter(response.streaming_content)

    def _next_chunk(self, timeout: float) -> bytes | None:
        outcome: list = []

        def read() -> None:
            try:
                outcome.append(next(self._chunks, None))
            except BaseException as exc:  # handed to the test's thread below
                outcome.append(exc)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(timeout)
        if not outcome:
            raise AssertionError(f"No chunk within {timeout} s; received {self.raw[-300:]!r}")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def read(self, timeout: float = TIMEOUT) -> bytes | None:
        """Read one chunk; return it, or None at the end of the response."""
        chunk = self._next_chunk(timeout)
        if chunk is None:
            self.ended = True
            return None
        self.raw += chunk
        self.events += self.parser.feed(chunk)
        return chunk

    def until(self, predicate, timeout: float = TIMEOUT) -> list:
        """Read until ``predicate(events)`` holds; return the events."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.read(remaining) is None:
                raise AssertionError(f"Not received in time; got {self.events!r}")
        return self.events

    def to_end(self, timeout: float = TIMEOUT) -> list:
        """Read to the end of the response, then close it as a server does; return the events."""
        for _ in range(1000):
            if self.read(timeout) is None:
                self.close()  # what gives the stream's slot back
                return self.events
        raise AssertionError("The response did not end.")

    def close(self) -> None:
        """End the stream as a gone client would, read it to its end, then close it."""
        self.response.end_stream()
        while not self.ended:
            self.read()
        close_response(self.response)


def named(name: str):
    """A predicate for ``Events.until``: an event of type ``name`` has arrived."""
    return lambda events: any(event.type == name for event in events)


def a_user(pk: int, **attributes) -> SimpleNamespace:
    """A logged-in user as far as the samples look: pk, is_authenticated, is_anonymous, is_staff."""
    return SimpleNamespace(
        **{
            "pk": pk,
            "is_authenticated": True,
            "is_anonymous": False,
            "is_staff": False,
            **attributes,
        }
    )


def wait_subscribed(redis_server, channel: str) -> None:
    """Wait until this process subscribes ``sse:<channel>`` in Redis (its hub's one connection)."""
    key = f"sse:{channel}"
    with redis_server.client() as client:
        for _ in range(200):
            if dict(client.pubsub_numsub(key))[key.encode()] >= 1:
                return
            time.sleep(0.05)
    raise AssertionError(f"{key} was never subscribed")


class RawStream:
    """One GET on a raw socket; ``raw`` is every byte the server sent, chunk framing included."""

    def __init__(self, port: int, path: str, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.raw = b""
        self.closed = False

    def read_until(self, predicate, timeout: float = TIMEOUT) -> bytes:
        """Receive until ``predicate(raw)`` holds; fail if the connection closes or time runs out first."""
        deadline = time.monotonic() + timeout
        while not predicate(self.raw):
            remaining = deadline - time.monotonic()
            if self.closed or remaining <= 0:
                state = "closed" if self.closed else f"nothing more within {timeout} s"
                raise AssertionError(f"{state}; received {self.raw[-300:]!r}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            self.closed = not data
            self.raw += data
        return self.raw

    def read_to_close(self, timeout: float = TIMEOUT) -> bytes:
        """Receive until the server closes the connection; return everything."""
        return self.read_until(lambda _: self.closed, timeout)

    def close(self) -> None:
        self.sock.close()


def ends_cleanly(raw: bytes) -> bool:
    """Whether a chunked response ends with a chunk of the (spread) retry hint alone, then the last chunk.

    A stream shed at shutdown is told to wait between SSE_RETRY and
    SSE_RETRY x (1 + SSE_RETRY_JITTER) milliseconds.
    """
    end = re.search(rb"\r\n([0-9a-fA-F]+)\r\n(retry: \d+\n\n)\r\n0\r\n\r\n\Z", raw)
    if end is None or int(end.group(1), 16) != len(end.group(2)):  # any case: gunicorn's "D"
        return False
    retry, jitter = DEFAULTS["SSE_RETRY"], DEFAULTS["SSE_RETRY_JITTER"]
    return spread_retry(end.group(2), retry, jitter) is not None


def check_send_event_command(console: str, stream: Events) -> None:
    """Run a page's ``manage.py send_event CHANNEL EVENT JSON --json``: it prints the id that ``stream`` receives."""
    [(argv, output)] = commands(console)
    assert argv[:3] == ["python", "manage.py", "send_event"]
    out = StringIO()
    call_command(*argv[2:], stdout=out)
    event_id = out.getvalue().strip()
    assert re.fullmatch(r"\d+-\d+", event_id)
    assert all(re.fullmatch(r"\d+-\d+", line) for line in output)  # the id, where shown

    [event] = [e for e in stream.until(named("order-shipped")) if e.type == "order-shipped"]
    assert (json.loads(event.data), event.last_event_id) == (json.loads(argv[5]), event_id)
