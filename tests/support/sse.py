"""A raw-socket HTTP/1.1 client for event streams, for tests that watch the wire.

No HTTP library sits between the socket and the test, so what the server
flushed, and when, is what ``chunks`` records::

    client = SseClient.connect(server.port, "/events/news")
    assert client.status == 200
    [event] = client.read_events(1, timeout=5)
    client.abort()  # RST, like a browser tab killed mid-stream
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Callable

_RECV_SIZE = 65536


class StreamEnded(TimeoutError):
    """The server ended the response before what was awaited arrived."""


class Headers(dict):
    """Response headers with case-insensitive names; a repeated header is joined with ', '."""

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: str | None = None) -> str | None:
        return super().get(name.lower(), default)


class SseClient:
    """One streaming response, read incrementally off a socket.

    ``chunks`` holds ``(time.monotonic(), bytes)`` for every piece of body that
    arrived: one entry per HTTP chunk when the response is chunked, otherwise
    one per ``recv()``. ``body`` is everything decoded so far; ``events`` every
    event the parser dispatched; ``parser`` the parser itself (its ``comments``
    show heartbeats, its ``retry`` the reconnection time).
    """

    def __init__(self, sock: socket.socket, parser=None) -> None:
        if parser is None:
            from django_sse.eventstream import SseParser

            parser = SseParser()
        self.sock = sock
        self.parser = parser
        self.version = ""  # e.g. "HTTP/1.1"
        self.status: int | None = None
        self.reason = ""
        self.headers = Headers()
        self.chunks: list[tuple[float, bytes]] = []
        self.body = b""
        self.events: list = []
        self.ended = False  # the server ended the response (last chunk, or EOF)
        self.completed = (
            False  # ... with the chunked body's last chunk (or the whole Content-Length)
        )
        self.reset = False  # the connection was reset rather than closed
        self._raw = b""  # received but not yet decoded
        self._chunked = False
        self._remaining: int | None = None  # body bytes left: of this chunk, or Content-Length
        self._piece = b""  # the chunk being received
        self._read_events = 0

    @classmethod
    def connect(
        cls,
        port: int,
        path: str,
        headers: dict[str, str | None] | None = None,
        method: str = "GET",
        timeout: float = 10,
        host: str = "127.0.0.1",
        body: bytes = b"",
        parser=None,
    ) -> SseClient:
        """Send a request; return the client once the status line and headers are in.

        ``headers`` add to or replace the defaults (Host, ``Accept:
        text/event-stream``, ``Cache-Control: no-cache``, as a browser sends);
        a header given as ``None`` is not sent.
        """
        sent = {
            "Host": f"{host}:{port}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        if body:
            sent["Content-Length"] = str(len(body))
        for name, value in (headers or {}).items():
            sent = {n: v for n, v in sent.items() if n.lower() != name.lower()}
            if value is not None:  # None drops a default header
                sent[name] = value
        head = f"{method} {path} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in sent.items())
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        client = cls(sock, parser)
        client._read_head(time.monotonic() + timeout)
        return client

    # Waiting for things

    def read_events(self, count: int, timeout: float = 10) -> list:
        """Return the next ``count`` unread events; raise TimeoutError if they don't come."""
        end = self._read_events + count
        self._wait(lambda: len(self.events) >= end, timeout, f"{count} events")
        return self._take(end)

    def read_until(self, predicate: Callable, timeout: float = 10) -> list:
        """Return the next events up to and including the first with ``predicate(event)`` true."""
        found: list[int] = []

        def arrived() -> bool:
            for index in range(self._read_events, len(self.events)):
                if predicate(self.events[index]):
                    found.append(index)
                    return True
            return False

        self._wait(arrived, timeout, "an event matching the predicate")
        return self._take(found[0] + 1)

    def read_bytes_until(self, predicate: Callable[[bytes], bool], timeout: float = 10) -> bytes:
        """Return the body so far once ``predicate(body)`` holds for it."""
        self._wait(lambda: predicate(self.body), timeout, "body matching the predicate")
        return self.body

    def read_to_end(self, timeout: float = 10) -> bytes:
        """Return the whole body once the server has ended the response."""
        self._wait(lambda: self.ended, timeout, "the end of the response")
        return self.body

    # Hanging up

    def close(self) -> None:
        """Hang up cleanly: FIN, as a browser does when an EventSource is closed."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()

    def abort(self) -> None:
        """Hang up abruptly: RST (SO_LINGER 0), as when a client's process dies."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self) -> SseClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # The wire

    def _take(self, end: int) -> list:
        taken = self.events[self._read_events : end]
        self._read_events = end
        return taken

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if self.ended:
                raise StreamEnded(f"Response ended before {what} arrived. {self._received()}")
            if not self._recv(deadline):
                if done():
                    return
                raise TimeoutError(f"No {what} within {timeout} s. {self._received()}")

    def _received(self) -> str:
        unread = self.events[self._read_events :]
        return f"Unread events: {unread!r}; body so far: {self.body[-2000:]!r}"

    def _recv(self, deadline: float) -> bool:
        """Receive once and decode what came; return False if the deadline passed first."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(_RECV_SIZE)
        except TimeoutError:
            return False
        except ConnectionResetError:
            self.reset = True
            data = b""
        arrived = time.monotonic()
        if not data:
            self.ended = True
        elif self.status is not None:
            self._raw += data
            self._decode_body(arrived)
        else:
            self._raw += data
        return True

    def _read_head(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self._raw:
            if self.ended or not self._recv(deadline):
                raise TimeoutError(f"No complete response head; received {self._raw[:2000]!r}")
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.version, status, *reason = status_line.split(" ", 2)
        self.status = int(status)
        self.reason = reason[0] if reason else ""
        for line in lines:
            name, _, value = line.partition(":")
            value = value.strip()
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self._chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if not self._chunked and "Content-Length" in self.headers:
            self._remaining = int(self.headers["Content-Length"])
        if self._raw or self._remaining == 0:
            self._decode_body(time.monotonic())

    def _decode_body(self, arrived: float) -> None:
        if not self._chunked:
            data, self._raw = self._raw, b""
            if self._remaining is not None:
                data = data[: self._remaining]
                self._remaining -= len(data)
                self.ended = self.completed = self._remaining == 0
            if data:
                self._add(arrived, data)
            return
        while not self.ended:
            if self._remaining is None:  # at a chunk-size line
                if b"\r\n" not in self._raw:
                    return
                size_line, self._raw = self._raw.split(b"\r\n", 1)
                self._remaining = int(size_line.split(b";")[0], 16)
                if self._remaining == 0:  # the last chunk; trailers are not awaited
                    self.ended = self.completed = True
                    return
            if self._remaining:
                data = self._raw[: self._remaining]
                self._raw = self._raw[len(data) :]
                self._piece += data
                self._remaining -= len(data)
                if self._remaining:
                    return  # the rest of this chunk is still to come
            if len(self._raw) < 2:
                return  # the CRLF that ends the chunk is still to come
            self._raw = self._raw[2:]
            self._remaining = None
            piece, self._piece = self._piece, b""
            self._add(arrived, piece)

    def _add(self, arrived: float, data: bytes) -> None:
        self.chunks.append((arrived, data))
        self.body += data
        self.events.extend(self.parser.feed(data))


SPREAD_RETRY = re.compile(rb"retry: (\d+)\n\n\Z")


def spread_retry(body: bytes, retry: int = 2000, jitter: float = 0.5) -> int | None:
    """Return the retry hint ``body`` ends with if it lies in [retry, retry * (1 + jitter)], else None.

    The hint of a stream the server shed (shutdown, lifetime, a stopping
    worker) is spread by ``SSE_RETRY_JITTER`` (default 0.5).
    """
    match = SPREAD_RETRY.search(body)
    if match is None:
        return None
    value = int(match.group(1))
    return value if retry <= value <= retry * (1 + jitter) else None


def streams_on_every_worker(
    connect: Callable[[], SseClient], workers: int, at_least: int, timeout: float = 30.0
) -> list[SseClient]:
    """Open streams with ``connect`` until ``workers`` distinct ``X-Worker-Pid`` serve them.

    Returns at least ``at_least`` open streams, every worker serving one.
    A worker still loading the app after its fork accepts nothing, so this
    waits for it (up to ``timeout`` seconds) instead of giving up after a
    number of tries; streams beyond ``at_least`` that land on a worker already
    served are closed, so the wait piles up nothing. Raises ``AssertionError``
    naming the workers seen when the time runs out.
    """
    clients: list[SseClient] = []
    deadline = time.monotonic() + timeout
    while True:
        client = connect()
        assert client.status == 200, client.body
        pids = {c.headers["X-Worker-Pid"] for c in clients}
        if len(clients) >= at_least and client.headers["X-Worker-Pid"] in pids:
            client.close()
        else:
            clients.append(client)
            pids.add(client.headers["X-Worker-Pid"])
        if len(pids) >= workers and len(clients) >= at_least:
            return clients
        if time.monotonic() > deadline:
            for opened in clients:
                opened.close()
            raise AssertionError(f"after {timeout} s, every stream landed on workers {pids}")
        time.sleep(0.02)
