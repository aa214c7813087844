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

_ALIVE_ERRNOS = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR}


def _raw_socket(environ: dict[str, Any]) -> _socket.socket | None:
    """Return the OS-level socket of the request, when the server lets us find it."""
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
        self._watcher = None

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
        """Under gevent, call ``on_readable`` when the socket turns readable (usually EOF)."""
        if self._sock is None:
            return
        from .concurrency import gevent_patched

        if not gevent_patched():
            return
        import gevent

        self._watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._watcher.start(self._readable, on_readable)

    def _readable(self, on_readable: Callable[[], None]) -> None:
        # Stop watching either way: after EOF the watcher would fire forever, and
        # data (a pipelined request) is the server's to read once the stream ends.
        self.unwatch()
        on_readable()

    def unwatch(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
