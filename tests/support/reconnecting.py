"""An EventSource-like test client: it reconnects with ``Last-Event-ID`` whenever the server ends the stream.

The hardening suites (limits, shutdown, faults) end streams on purpose and
check that a client which resumes, as a browser does, loses nothing::

    reader = Resuming(server.port, "/events/news/")
    data = reader.read_data(100, event="n", timeout=30)
    reader.close()
    assert data == [str(n) for n in range(100)]
"""

from __future__ import annotations

import socket
import threading
import time

from django_sse.eventstream import SseParser
from tests.support.sse import SseClient, StreamEnded


class Resuming:
    """Read one channel's events across server-ended streams, resuming from the last id.

    ``endings`` holds, for every response the server ended, the last bytes it
    sent (where the ``retry:`` hint should be); ``completions`` whether each
    ended with the chunked body's last chunk (not a cut connection); ``pids`` the ``X-Worker-Pid``
    header of every response (None when the view sends none); ``resets`` the
    ``stream-reset`` events received.

    With ``keep_alive`` it reconnects as a browser does: on the same
    connection when the server left it open after the response (counted in
    ``reused``), else on a new one; any status but 200 then fails the read,
    as it makes an ``EventSource`` give up. With ``wait_retry`` it waits the
    reconnection time the server last sent (``retry:``) before reconnecting,
    as a browser does; else only a moment.
    """

    def __init__(
        self,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        connect_timeout: float = 15,
        keep_alive: bool = False,
        wait_retry: bool = False,
    ) -> None:
        self.port = port
        self.path = path
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self.keep_alive = keep_alive
        self.wait_retry = wait_retry
        self.reused = 0
        self.last_event_id = ""
        self.data: list[str] = []
        self.endings: list[bytes] = []
        self.completions: list[bool] = []
        self.pids: list[str | None] = []
        self.resets: list = []
        self.client: SseClient | None = None
        self.connect()

    def connect(self) -> SseClient:
        headers = self._headers()
        deadline = time.monotonic() + self.connect_timeout
        while True:  # a worker that is stopping may refuse the connection for a moment
            try:
                client = SseClient.connect(
                    self.port, self.path, headers=headers, timeout=10, parser=self._parser()
                )
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            if client.status == 200 or time.monotonic() > deadline:
                break
            client.close()  # e.g. a 503 from a worker that is shutting down
            time.sleep(0.05)
        assert client.status == 200, (client.status, client.body)
        self.client = client
        self.pids.append(client.headers.get("X-Worker-Pid"))
        return client

    def read_data(self, count: int, event: str | None = None, timeout: float = 30) -> list[str]:
        """Read until ``count`` events (of type ``event``) arrived in all; return their data."""
        deadline = time.monotonic() + timeout
        while len(self.data) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(self.data)} of {count} events after {timeout} s; "
                    f"last: {self.data[-3:]!r}, endings: {len(self.endings)}"
                )
            try:
                [item] = self.client.read_events(1, timeout=remaining)
            except StreamEnded:
                self._reconnect()
                continue
            if item.type == "stream-reset":
                self.resets.append(item)
            elif event is None or item.type == event:
                self.data.append(item.data)
        return self.data

    def _reconnect(self) -> None:
        client = self.client
        self.endings.append(client.body[-200:])
        self.completions.append(client.completed)
        self.last_event_id = client.parser.last_event_id
        retry = client.parser.retry if self.wait_retry else None
        # A browser waits the retry time; without wait_retry this only avoids a busy loop.
        time.sleep(retry / 1000 if retry is not None else 0.02)
        if self.keep_alive and not client.reset and _still_open(client.sock):
            self.reused += 1
            self.client = _request_again(
                client, self.port, self.path, self._headers(), self._parser()
            )
            assert self.client.status == 200, (self.client.status, self.client.body)
            self.pids.append(self.client.headers.get("X-Worker-Pid"))
            return
        client.close()
        self.connect()

    def _parser(self) -> SseParser:
        # Like an EventSource, keep the last event id across connections: a response
        # that sends no id (a retry hint alone) must not make the client forget it.
        return SseParser(last_event_id=self.last_event_id)

    def _headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _still_open(sock: socket.socket, wait: float = 0.2) -> bool:
    """Return whether the server kept the connection open ``wait`` seconds after a response."""
    sock.settimeout(wait)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except TimeoutError:
        return True
    except OSError:  # reset
        return False


def _request_again(
    previous: SseClient, port: int, path: str, headers: dict[str, str], parser: SseParser
) -> SseClient:
    """Send the next request on ``previous``'s kept-alive connection; return its client."""
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    previous.sock.sendall(head.encode("latin-1") + b"\r\n")
    client = SseClient(previous.sock, parser)
    client._read_head(time.monotonic() + 10)
    return client


def read_in_threads(
    readers: list[Resuming], count: int, event: str, timeout: float = 60
) -> tuple[list[threading.Thread], dict[int, list]]:
    """Return a thread per reader (not started) that reads ``count`` data of ``event``.

    Each reader's data lands in the returned dict under its index; an error
    is kept there as the list's only item, for the test's assertions to show.
    """
    received: dict[int, list] = {}

    def read(index: int) -> None:
        try:
            received[index] = readers[index].read_data(count, event=event, timeout=timeout)
        except Exception as exc:  # reported by the caller's assertions
            received[index] = [exc]

    threads = [threading.Thread(target=read, args=(index,)) for index in range(len(readers))]
    return threads, received
