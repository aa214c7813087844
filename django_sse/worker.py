"""An optional gunicorn worker that opens streams for less CPU and memory.

Run it with ``gunicorn -k django_sse.worker.GeventWorker mysite.wsgi``; plain
``-k gevent`` stays fully supported. It *is* gunicorn's gevent worker (the
same master, signals, graceful shutdown, ``max_requests``, limits and
settings) with one change: a plain bodiless ``GET`` or ``HEAD`` (what
``EventSource`` sends, see ``http1.py``) is read and answered by a short
path of its own, the response headers going out in the same write as the
first chunk. Every other request, and every connection of a configuration
the short path does not cover (TLS, the PROXY protocol, HTTP/2, an access
log, ``pre_request``/``post_request`` hooks), goes through gunicorn's own
code unchanged, with the bytes already read handed back to it.

Measured (``benchmarks/README.rst``): a stream opens with about a third less
worker CPU, and the worker keeps less memory per idle stream.
Pitfall: the short path writes no access log line; with ``accesslog`` set
every request takes gunicorn's path and the saving is gone.
"""

from __future__ import annotations

import _socket
import os
from typing import Any

import gevent
from gunicorn import SERVER
from gunicorn import util as gunicorn_util
from gunicorn.config import Config
from gunicorn.http.wsgi import base_environ
from gunicorn.workers import ggevent

from .http1 import Limits, SimpleHead, http_date, parse_simple_head, response_head

_MAX_HEAD = 64 * 1024  # more than gunicorn's limits allow; past it, gunicorn refuses
_RECV = 8192
_NO_BODY_STATUS = ("1", "204", "304")
# Hop-by-hop headers belong to this connection, not to the application.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
)


def short_path_refusal(cfg: Config) -> str | None:
    """Return why gunicorn's settings keep every request on gunicorn's path, or None."""
    settings = cfg.settings
    for name in ("pre_request", "post_request"):
        if settings[name].value is not settings[name].default:
            return f"a {name} hook is set"
    if cfg.is_ssl:
        return "TLS is on (certfile)"
    if cfg.proxy_protocol not in ("off", False, None):
        return "the PROXY protocol is on"
    if getattr(cfg, "http2_cleartext", "off") not in ("off", False, None):
        return "HTTP/2 cleartext is on"
    if cfg.accesslog:
        return "an access log is written"
    return None


class GeventWorker(ggevent.GeventWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's gevent worker, answering plain GET/HEAD requests by a shorter path."""

    #: Requests answered by the short path so far (the rest went through gunicorn's).
    short_path_requests = 0

    def init_process(self) -> None:
        refusal = short_path_refusal(self.cfg)
        self.short_path = refusal is None
        if refusal is not None:
            self.log.info(
                "django-sse's worker answers every request by gunicorn's path: %s.", refusal
            )
        excluded = {name.upper() for name in self.cfg.secure_scheme_headers}
        excluded.update(name.upper().replace("_", "-") for name in self.cfg.forwarder_headers)
        self.limits = Limits(
            self.cfg.limit_request_line,
            self.cfg.limit_request_fields,
            self.cfg.limit_request_field_size,
            frozenset(excluded),
        )
        self.environ_base = base_environ(self.cfg)
        self.environ_base["wsgi.multithread"] = True
        if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
            # A debugging aid that keeps, per greenlet (one per stream), the stack that
            # spawned it; set the variable to 1 to have it back.
            gevent.config.track_greenlet_tree = False
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if not self.short_path:
            super().handle(listener, client, addr)
            return
        client.setblocking(1)
        connection = _Connection(self, listener.getsockname(), client, addr)
        try:
            unparsed = connection.serve()
        except OSError:
            unparsed = None  # the client went away: nothing to answer
        except Exception:
            self.log.exception("Error handling request")
            unparsed = None
        if unparsed is None:
            gunicorn_util.close(client)
            return
        # gunicorn's handle() reads the request again from the bytes already taken.
        super().handle(listener, _Replaying(client, unparsed), addr)


class _Connection:
    """One client connection on the short path: plain requests, kept alive, until another kind."""

    def __init__(self, worker: GeventWorker, server: Any, client: Any, addr: Any) -> None:
        self.worker = worker
        self.server = server
        self.client = client
        self.addr = addr
        self.buffer = b""
        self.raw = client._sock  # gevent's socket wraps the OS socket, non-blocking

    def send(self, data: bytes) -> None:
        """Write ``data``: straight to the OS socket when it takes it all, as it mostly does.

        gevent's ``sendall()`` asks the socket's options and switches to the
        hub on each call; a stream's chunks are small and the socket's buffer
        is mostly empty, so one non-blocking send usually writes everything.
        """
        try:
            sent = _socket.socket.send(self.raw, data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            self.client.sendall(data[sent:])

    def serve(self) -> bytes | None:
        """Answer plain requests; return the unread bytes of one that is not (None: done)."""
        keepalive = self.worker.cfg.keepalive
        while True:
            with gevent.Timeout(keepalive or None, False):
                head = self._read_head()
            if head is None:
                return None  # closed, or silent past keepalive
            exchange = self._exchange(*head)
            # The head is not kept for the hours a stream may last.
            head = None
            if isinstance(exchange, bytes):
                return exchange
            if not exchange.run():
                return None

    def _exchange(self, raw: bytes, rest: bytes) -> _Exchange | bytes:
        """Return the exchange for a plain request's head, or the bytes to hand to gunicorn."""
        worker = self.worker
        request = parse_simple_head(raw, worker.limits)
        if request is None:
            return raw + b"\r\n\r\n" + rest
        self.buffer = rest
        worker.short_path_requests += 1
        worker.nr += 1
        if worker.nr >= worker.max_requests and worker.alive:
            worker.log.info("Autorestarting worker after current request.")
            worker.alive = False
        return _Exchange(self, request)

    def _read_head(self) -> tuple[bytes, bytes] | None:
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                return buffer[:end], buffer[end + 4 :]
            if len(buffer) > _MAX_HEAD:
                return buffer, b""  # not plain: gunicorn answers 431/400
            data = self.client.recv(_RECV)
            if not data:
                self.buffer = b""
                return None
            buffer += data
            self.buffer = buffer


class _Exchange:
    """One request and its response on the short path."""

    def __init__(self, connection: _Connection, request: SimpleHead) -> None:
        self.connection = connection
        # What the response needs of the request; its head is not kept for the
        # hours a stream may last (the environ holds what the application reads).
        self.target = request.target
        self.head_only = request.method == "HEAD"
        self.close_asked = request.protocol == "HTTP/1.0" or (
            (request.header("CONNECTION") or "").lower() == "close"
        )
        self.environ: dict[str, Any] | None = self._environ(request)
        self.head = b""  # the response head, until written with the first chunk
        self.started = False
        self.chunked = False
        self.body = not self.head_only
        self.keep_alive = False

    def run(self) -> bool:
        """Answer the request; return whether the connection stays open for another."""
        connection = self.connection
        worker = connection.worker
        environ, self.environ = self.environ, None
        try:
            result = worker.wsgi(environ, self.start_response)
        except Exception:
            worker.log.exception("Error handling request %s", self.target)
            self._fail()
            return False
        try:
            for chunk in result:
                if chunk:
                    self._write(chunk)
            if not self.started and not self.head:
                raise AssertionError("the application did not call start_response()")
            tail = self.head + (b"0\r\n\r\n" if self.chunked else b"")
            self.head = b""
            self.started = True
            if tail:
                connection.send(tail)
        except (OSError, gevent.GreenletExit, SystemExit):
            return False
        except Exception:
            worker.log.exception("Error handling request %s", self.target)
            self._fail()
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return self.keep_alive and worker.alive

    def _environ(self, request: SimpleHead) -> dict[str, Any]:
        connection = self.connection
        environ = dict(connection.worker.environ_base)
        path, _, query = request.target.partition("?")
        environ["REQUEST_METHOD"] = request.method
        environ["RAW_URI"] = request.target
        environ["PATH_INFO"] = gunicorn_util.unquote_to_wsgi_str(path) if "%" in path else path
        environ["QUERY_STRING"] = query
        environ["SCRIPT_NAME"] = ""
        environ["SERVER_PROTOCOL"] = request.protocol
        environ["wsgi.url_scheme"] = "http"
        environ["wsgi.input"] = _EMPTY_INPUT
        environ["gunicorn.socket"] = connection.client
        addr = connection.addr
        if isinstance(addr, tuple):
            environ["REMOTE_ADDR"] = addr[0]
            environ["REMOTE_PORT"] = str(addr[1])
        else:
            environ["REMOTE_ADDR"] = addr.decode() if isinstance(addr, bytes) else str(addr)
        host = None
        for name, value in request.headers:
            key = "HTTP_" + name.replace("-", "_")
            if name == "HOST":
                host = value
            if key in environ:
                environ[key] = environ[key] + "," + value
            else:
                environ[key] = value
        server = connection.server
        if isinstance(server, tuple):
            environ["SERVER_NAME"] = server[0]
            environ["SERVER_PORT"] = str(server[1])
        else:  # a Unix socket: the Host header names the site
            name, _, port = (host or "").partition(":")
            environ["SERVER_NAME"] = name
            environ["SERVER_PORT"] = port or ("80" if host else "")
        return environ

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info is not None and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        close = self.close_asked
        length = False
        kept = []
        for name, value in headers:
            lowered = name.lower()
            if lowered in _HOP_BY_HOP:
                if lowered == "connection" and value.lower() == "close":
                    close = True
                continue
            if lowered == "content-length":
                length = True
            kept.append((name, value))
        if status.startswith(_NO_BODY_STATUS) or self.head_only:
            self.body = False
        elif not length and not close:
            self.chunked = True  # else the body ends when the connection closes
        worker = self.connection.worker
        close = close or not worker.alive or not worker.cfg.keepalive
        self.keep_alive = not close
        extra = _server_headers()
        extra += "Connection: close\r\n" if close else "Connection: keep-alive\r\n"
        if self.chunked:
            extra += "Transfer-Encoding: chunked\r\n"
        self.head = response_head(status, kept, extra)
        return self._write

    def _write(self, chunk: bytes) -> None:
        if not self.body:
            return
        data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk
        if not self.started:
            if not self.head:
                raise AssertionError("the application wrote before start_response()")
            data = self.head + data
            self.head = b""
            self.started = True
        self.connection.send(data)

    def _fail(self) -> None:
        """Answer 500 if nothing was sent yet; either way the connection closes."""
        if self.started:
            return
        body = b"Internal Server Error\n"
        head = response_head(
            "500 Internal Server Error",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            _server_headers() + "Connection: close\r\n",
        )
        try:
            self.connection.client.sendall(head + body)
        except OSError:
            pass


def _server_headers() -> str:
    """Return the ``Server`` and ``Date`` lines every response of the short path carries."""
    return f"Server: {SERVER}\r\nDate: {http_date()}\r\n"


class _EmptyInput:
    """``wsgi.input`` of a bodiless request."""

    def read(self, size: int = -1) -> bytes:
        return b""

    def readline(self, size: int = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Any:
        return iter(())


_EMPTY_INPUT = _EmptyInput()


class _Replaying:
    """The client's socket with the bytes already read put back in front, for gunicorn's parser."""

    def __init__(self, sock: Any, unread: bytes) -> None:
        self._wrapped = sock
        self._unread = unread

    def recv(self, size: int, *flags: int) -> bytes:
        if self._unread:
            data, self._unread = self._unread[:size], self._unread[size:]
            return data
        return self._wrapped.recv(size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


__all__ = ["GeventWorker", "short_path_refusal"]
