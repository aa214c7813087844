"""Helpers for testing your own streams: Django's test client, the memory broker, a live server.

A stream never ends by itself, so a test that iterates it hangs. These read
the events a test needs, with a timeout, and then close the stream (its
``finally:`` runs)::

    from . import send_event
    from .testing import memory_broker, sse_stream

    @memory_broker()
    def test_news_stream(client):
        with sse_stream(client, "/events/news/") as stream:
            send_event("update", {"n": 1}, channel="news")
            [event] = stream.read_events(1)
        assert (event.type, event.json()) == ("update", {"n": 1})

``read_events(response, n)`` reads the first ``n`` events of a response the
test already has (``client.get(...)``, or a view called with a
``RequestFactory`` request). ``live_events(url, n)`` reads them from a real
server over HTTP (``LiveServerTestCase.live_server_url``, pytest-django's
``live_server.url``). Events are ``django_sse.eventstream.Event``: ``type``,
``data``, ``last_event_id`` and ``json()``.

Pitfall: ``send_event`` right after opening reaches the stream only once
the stream is subscribed. ``sse_stream`` returns once it has read the
stream's opening, which with the memory broker means subscribed; with Redis
the subscription is confirmed a little later, so publish after reading a
first event, or resume with ``last_event_id``.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import override_settings

from .eventstream import Event, SseParser
from .views import SseResponse

__all__ = [
    "close_response",
    "StreamTimeout",
    "SseStream",
    "live_events",
    "memory_broker",
    "read_events",
    "sse_stream",
]

#: Seconds a helper waits for the events asked for, unless told otherwise.
DEFAULT_TIMEOUT = 5.0


class StreamTimeout(AssertionError):
    """The stream did not send the events asked for in time; ``events`` holds what it sent."""

    def __init__(self, message: str, events: list[Event]) -> None:
        super().__init__(message)
        self.events = events


def memory_broker() -> override_settings:
    """Use the in-process broker (no Redis), as a decorator or a ``with`` block.

    ``send_event`` then reaches the streams of the test's own process at
    once, whatever ``SSE_REDIS_URL`` the test settings name. Pitfall: in a
    test that also changes settings with pytest-django's ``settings``
    fixture, use ``with memory_broker():`` inside the test, after those
    changes; as a decorator around it, Django restores the two overrides in
    the wrong order and the memory broker outlives the test.
    """
    return override_settings(SSE_BROKER="memory", SSE_REDIS_URL=None)


class SseStream:
    """A stream a test reads from: its response, and the events read so far."""

    def __init__(self, response: Any) -> None:
        if not isinstance(response, SseResponse):
            status = getattr(response, "status_code", None)
            raise AssertionError(f"Not a stream: a {type(response).__name__} (status {status}).")
        self.response: SseResponse = response
        self.status_code: int = response.status_code
        self.parser = SseParser()
        self.events: list[Event] = []
        self._chunks: Iterator[bytes] = iter(response.streaming_content)  # type: ignore[arg-type]
        self._read = 0
        self._ended = False

    def read_events(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Event]:
        """Return the next ``count`` events; raise ``StreamTimeout`` if they do not come in time."""
        wanted = self._read + count
        self._pull(lambda: len(self.events) >= wanted, timeout, f"{count} events")
        taken = self.events[self._read : wanted]
        self._read = wanted
        return taken

    def read_opening(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Read the stream's first chunk (its retry hint or first comment)."""
        self._pull(
            lambda: (
                self.parser.retry is not None or bool(self.parser.comments) or bool(self.events)
            ),
            timeout,
            "the opening",
        )

    def close(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """End the stream as if the client left, close the response; wait for ``iterator()``."""
        if not self._ended:
            self.response.end_stream()
            # Read to the end: Django's test client closes its responses then, in its own way.
            for _ in self._chunks:
                pass
            self._ended = True
        close_response(self.response, timeout)

    def _pull(self, done: Any, timeout: float, what: str) -> None:
        # The stream blocks in the calling thread between chunks: a timer ends it
        # (as a gone client would) so that iterating returns.
        timer = threading.Timer(timeout, self.response.end_stream)
        timer.daemon = True
        timer.start()
        started = time.monotonic()
        try:
            while not done() and not self._ended:
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._ended = True
                    self.events.extend(self.parser.close())
                    break
                self.events.extend(self.parser.feed(chunk))
        finally:
            timer.cancel()
        if not done():
            spent = time.monotonic() - started
            raise StreamTimeout(
                f"The stream sent {len(self.events) - self._read} of {what} in {spent:.1f} s "
                f"({'it ended' if spent < timeout else 'timed out'}).",
                self.events[self._read :],
            )


def close_response(response: SseResponse, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Close a stream's response (unless closed) as Django's test client closes its own.

    Then wait for ``iterator()`` to finish. Like the test client, this keeps
    ``request_finished`` from closing the database connections: in a test
    without database access (pytest-django) that would raise, once an earlier
    test has opened one.
    """
    if not response.closed:
        request_finished.disconnect(close_old_connections)
        try:
            response.close()
        finally:
            request_finished.connect(close_old_connections)
    response.join_stream(timeout)


@contextmanager
def sse_stream(
    client: Any, path: str, last_event_id: str | None = None, **extra: Any
) -> Iterator[SseStream]:
    """Open a stream with Django's test ``client``; closed (and its ``iterator()`` finished) on leaving.

    ``last_event_id`` resumes like a reconnecting browser; ``extra`` goes to
    ``client.get()`` (headers as ``HTTP_*`` keys or ``headers={...}``).
    """
    if last_event_id is not None:
        extra["HTTP_LAST_EVENT_ID"] = last_event_id
    stream = SseStream(client.get(path, HTTP_ACCEPT="text/event-stream", **extra))
    try:
        stream.read_opening()
        yield stream
    finally:
        stream.close()


def read_events(response: Any, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Event]:
    """Return the first ``count`` events of a stream ``response``, then close it."""
    stream = SseStream(response)
    try:
        return stream.read_events(count, timeout)
    finally:
        stream.close(timeout)


def live_events(
    url: str, count: int, timeout: float = DEFAULT_TIMEOUT, last_event_id: str | None = None
) -> list[Event]:
    """Return the first ``count`` events of the stream at ``url`` on a running server, then disconnect.

    For ``LiveServerTestCase`` (``self.live_server_url + "/events/news/"``)
    and pytest-django's ``live_server``. Raises ``StreamTimeout`` with the
    events that came when fewer arrive within ``timeout`` seconds.
    """
    parts = urllib.parse.urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "localhost", parts.port, timeout=timeout)
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    parser = SseParser()
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise AssertionError(f"{url} answered {response.status}: {response.read(200)!r}")
        while len(events) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if connection.sock is not None:
                connection.sock.settimeout(remaining)
            try:
                chunk = response.read1(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            events.extend(parser.feed(chunk))
    finally:
        connection.close()
    if len(events) < count:
        raise StreamTimeout(f"{url} sent {len(events)} of {count} events in {timeout} s.", events)
    return events[:count]
