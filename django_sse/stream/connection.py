"""Noticing that the client of a stream has gone, without waiting for a write to fail.

An SSE client never sends anything after its request, so its socket turns
readable only when it closes (EOF) or resets. ``ClientConnection.gone()``
peeks without consuming; under gevent a read watcher also wakes the stream as
soon as the client closes, so resources are released at once rather than at
the next heartbeat. Servers that do not expose the socket fall back to the
heartbeat: the first write to a vanished client fails.
"""

from __future__ import annotations

import _socket
import errno
import socket
from collections.abc import Callable
from typing import Any

from ..core.concurrency import Watch, watch_readable

_ALIVE_ERRNOS = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR}


def multiplexed(environ: dict[str, Any]) -> bool:
    """Return whether the request came over HTTP/2 or later, where one connection carries many streams.

    Its socket is then not this stream's: the client's frames (window
    updates, pings, other requests) make it readable, TLS wraps it, and
    shutting it down would end every stream of the connection.
    """
    protocol = str(environ.get("SERVER_PROTOCOL", ""))
    return protocol.startswith(("HTTP/2", "HTTP/3")) or environ.get("HTTP_VERSION") == "2"


def _raw_socket(environ: dict[str, Any]) -> _socket.socket | None:
    """Return the OS-level socket of the request, when the server lets us find it.

    None over HTTP/2 (see ``multiplexed``): the stream then learns that its
    client left from the server, when a write fails.
    """
    if multiplexed(environ):
        return None
    sock = environ.get("gunicorn.socket")
    if sock is None:
        # gevent.pywsgi and wsgiref (runserver) read the request from socket.makefile(),
        # which runserver wraps in a LimitedStream.
        stream = environ.get("wsgi.input")
        for attribute in ("rfile", "stream", "raw", "_sock"):
            stream = getattr(stream, attribute, stream)
        sock = stream
    # A gevent socket wraps the real one: peeking on that never blocks or switches.
    inner = getattr(sock, "_sock", sock)
    return inner if isinstance(inner, _socket.socket) else None


class ClientConnection:
    """The client side of one stream, as far as the server lets us see it."""

    __slots__ = ("_sock", "_watcher")

    def __init__(self, environ: dict[str, Any]) -> None:
        self._sock = _raw_socket(environ)
        self._watcher: Watch | None = None

    def gone(self) -> bool:
        """Return whether the client has closed or reset the connection."""
        if self._sock is None:
            return False
        try:
            data = _socket.socket.recv(self._sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError as exc:
            return exc.errno not in _ALIVE_ERRNOS
        return data == b""

    def watch(self, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable`` when the socket turns readable (usually EOF), where the seam can watch."""
        if self._sock is None:
            return
        self._watcher = watch_readable(self._sock.fileno(), self._readable, on_readable)

    def _readable(self, on_readable: Callable[[], None]) -> None:
        # Stop watching either way: after EOF the watcher would fire forever, and
        # data (a pipelined request) is the server's to read once the stream ends.
        self.unwatch()
        # Peeking also takes a pending error (ETIMEDOUT, see limit_unacknowledged), so
        # the server's last write to this socket fails with EPIPE, a disconnect it
        # ignores, rather than an error it logs with a traceback.
        self.gone()
        on_readable()

    def hang_up(self) -> None:
        """Shut the connection down, failing a write blocked on a client that stopped reading."""
        if self._sock is None:
            return
        try:
            _socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already gone

    def limit_unacknowledged(self, seconds: float) -> None:
        """Have the kernel drop the connection once sent data stays unacknowledged for ``seconds``.

        A client that vanished without closing (its network gone, a laptop
        shut) acknowledges no heartbeat, and one whose process hangs keeps its
        window closed; either way the connection fails after ``seconds`` (the
        watcher then ends the stream) instead of lingering for TCP's
        retransmission timeout, about 15 minutes. Other sockets than TCP (a
        Unix socket behind a proxy) are left alone.
        """
        if self._sock is None or not hasattr(socket, "TCP_USER_TIMEOUT"):
            return
        try:
            _socket.socket.setsockopt(
                self._sock, socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000)
            )
        except OSError:
            pass  # not a TCP socket

    def close_after_response(self) -> None:
        """Make the server close the connection when this response ends, not keep it alive.

        Shutting down the reading side makes the server's wait for a next
        request on this connection see end-of-file at once; what was written
        still goes out. The client's reconnection then goes through the
        listening socket, to any worker.
        """
        if self._sock is None:
            return
        try:
            _socket.socket.shutdown(self._sock, socket.SHUT_RD)
        except OSError:
            pass  # already gone

    def unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()
