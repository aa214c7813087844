"""An optional gunicorn worker that opens streams for less CPU and memory.

Run it with ``gunicorn -k django_sse.worker.GeventWorker mysite.wsgi``; plain
``-k gevent`` stays fully supported. It *is* gunicorn's gevent worker (the
same master, signals, graceful shutdown, ``max_requests``, limits and
settings) with one change: a plain bodiless HTTP/1.1 ``GET`` or ``HEAD``
(what ``EventSource`` sends, recognised by ``http1.py``) is answered by a
short path of its own, the response headers going out in the same write as
the first chunk. The response itself is gunicorn's (``gunicorn.http.wsgi.
Response``: its status and header checks, its framing, never more than
``Content-Length`` bytes). Every other request, and every connection of a
configuration the short path does not cover (see ``short_path_refusal``),
goes through gunicorn's own code unchanged, with the bytes already read
handed back to it exactly as received.

Measured (``benchmarks/README.rst``): a stream opens with less worker CPU,
and the worker keeps less memory per idle stream.
Pitfall: the short path writes no access log line; with ``accesslog``,
``statsd_host`` or a ``logger_class`` set every request takes gunicorn's
path and the saving is gone.
"""

from __future__ import annotations

import _socket
import os
from typing import Any

import gevent
from gunicorn import util as gunicorn_util
from gunicorn.config import Config
from gunicorn.http import wsgi as gunicorn_wsgi
from gunicorn.workers import ggevent

from .servers.http1 import Limits, SimpleHead, head_is_doomed, parse_simple_head

# Heads longer than this are gunicorn's to read (and to refuse, past its limits);
# no EventSource request comes close.
_MAX_HEAD = 64 * 1024
_RECV = 8192


def short_path_refusal(cfg: Config) -> str | None:
    """Return why gunicorn's settings keep every request on gunicorn's path, or None.

    The short path covers what a plain request meets under these settings;
    any setting that changes how such a request is read, logged or answered
    beyond that sends every request through gunicorn's code instead.
    """
    if not hasattr(gunicorn_wsgi.Response, "_emit_body"):
        return "gunicorn is older than 27.0 (its Response frames the body itself)"
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
    if cfg.statsd_host:
        return "statsd_host is set (every request is counted)"
    logger_class = settings["logger_class"]
    if logger_class.value != logger_class.default:
        return "a logger_class is set (it may log every request)"
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
        # As gunicorn reads it, per request, from the environment (raw_env sets it there).
        self.script_name = os.environ.get("SCRIPT_NAME", "")
        self.environ_base = gunicorn_wsgi.base_environ(self.cfg)
        self.environ_base["wsgi.multithread"] = True
        # Tuning (greenlet tree, collector) is the adapter's, as for -k gevent: servers.tuning.
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
        """Answer plain requests; return the unread bytes of one that is not (None: done).

        The bytes returned are exactly those received and not yet answered,
        in order: gunicorn reads them as if it had read them itself.
        """
        keepalive = self.worker.cfg.keepalive
        while True:
            with gevent.Timeout(keepalive or None, False):
                complete = self._read_head()
            if complete is None:
                return None  # closed, or silent past keepalive
            if not complete:
                return self.buffer
            exchange = self._exchange()
            if exchange is None:
                return self.buffer
            if not exchange.run():
                return None

    def _exchange(self) -> _Exchange | None:
        """Return the exchange for the plain request at the buffer's start, or None."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        worker = self.worker
        request = parse_simple_head(buffer[:end], worker.limits)
        if request is None:
            return None
        # gunicorn's own split of the target (a "//" path is a path, not a host).
        target = gunicorn_util.split_request_uri(request.target)
        if not target.path.startswith(worker.script_name):
            return None  # gunicorn's answer to a path outside SCRIPT_NAME
        # The head is not kept for the hours a stream may last.
        self.buffer = buffer[end + 4 :]
        worker.short_path_requests += 1
        worker.nr += 1
        if worker.nr >= worker.max_requests and worker.alive:
            worker.log.info("Autorestarting worker after current request.")
            worker.alive = False
        return _Exchange(self, request, target.path, target.query)

    def _read_head(self) -> bool | None:
        """Read until the buffer holds a whole head (True) or one that is not plain (False).

        None: the client closed the connection before a request began.
        """
        buffer = self.buffer
        while True:
            if buffer.find(b"\r\n\r\n") >= 0:
                return True
            if buffer and (len(buffer) > _MAX_HEAD or head_is_doomed(buffer)):
                return False
            data = self.client.recv(_RECV)
            if not data:
                if buffer:
                    return False  # a partial request: gunicorn's to answer
                return None
            buffer += data
            self.buffer = buffer


class _PlainRequest:
    """What gunicorn's ``Response`` reads of a request: its method, version and wish to close."""

    __slots__ = ("method", "close_asked")

    version = (1, 1)  # the short path serves HTTP/1.1 only

    def __init__(self, method: str, close_asked: bool) -> None:
        self.method = method
        self.close_asked = close_asked

    def should_close(self) -> bool:
        return self.close_asked


class _Response(gunicorn_wsgi.Response):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's own response (status and header checks, framing, ``Content-Length``).

    Two changes: the head goes out in the same write as the first chunk, and
    a write is one non-blocking ``send()`` when the socket takes it all.
    """

    headers_sent: bool
    chunked: bool
    sent: int

    def __init__(self, connection: _Connection, request: _PlainRequest) -> None:
        super().__init__(request, connection.client, connection.worker.cfg)
        self.connection = connection
        self.pending = b""

    def write(self, data: bytes) -> None:
        """Write a body chunk: gunicorn's ``write()``, with a shortcut for a stream's chunks.

        Once a chunked response's head is out there is no length to count
        down and no body to drop (gunicorn never chunks those), so a chunk
        goes straight out, as gunicorn's own ``write()`` would send it.
        """
        if self.chunked and self.headers_sent and type(data) is bytes:
            if data:  # gunicorn skips an empty chunk: it would end the body
                self.sent += len(data)
                self._emit_body(data)
            return
        super().write(data)

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        lines.append("\r\n")
        self.pending = "".join(lines).encode("latin-1")
        self.headers_sent = True

    def _emit_body(self, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self.pending:
            data, self.pending = self.pending + data, b""
        self.connection.send(data)

    def finish(self) -> None:
        """Send what is still due: the head of an empty body, the last chunk."""
        self.send_headers()
        tail = self.pending + (b"0\r\n\r\n" if self.chunked else b"")
        self.pending = b""
        if tail:
            self.connection.send(tail)


class _Exchange:
    """One request and its response on the short path."""

    def __init__(self, connection: _Connection, request: SimpleHead, path: str, query: str) -> None:
        self.connection = connection
        # What the response needs of the request; its head is not kept for the
        # hours a stream may last (the environ holds what the application reads).
        self.target = request.target
        close_asked = (request.header("CONNECTION") or "").lower() == "close"
        self.response = _Response(connection, _PlainRequest(request.method, close_asked))
        worker = connection.worker
        if not worker.alive or not worker.cfg.keepalive:
            self.response.force_close()
        self.environ: dict[str, Any] | None = self._environ(request, path, query)

    def run(self) -> bool:
        """Answer the request; return whether the connection stays open for another."""
        worker = self.connection.worker
        response = self.response
        environ, self.environ = self.environ, None
        try:
            result = worker.wsgi(environ, response.start_response)
        except Exception as exc:
            self._fail(exc)
            return False
        try:
            for chunk in result:
                response.write(chunk)
            if response.status is None:
                raise AssertionError("the application did not call start_response()")
            response.finish()
        except (OSError, gevent.GreenletExit, SystemExit):
            return False
        except Exception as exc:
            self._fail(exc)
            return False
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return not response.should_close()

    def _environ(self, request: SimpleHead, path: str, query: str) -> dict[str, Any]:
        connection = self.connection
        worker = connection.worker
        environ = dict(worker.environ_base)
        environ["REQUEST_METHOD"] = request.method
        environ["RAW_URI"] = request.target
        environ["QUERY_STRING"] = query
        path_info = path[len(worker.script_name) :]
        environ["PATH_INFO"] = (
            gunicorn_util.unquote_to_wsgi_str(path_info) if "%" in path_info else path_info
        )
        environ["SCRIPT_NAME"] = worker.script_name
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

    def _fail(self, exc: Exception) -> None:
        """Answer as gunicorn does (its 500 page) if nothing was sent yet, and log ``exc``."""
        response = self.response
        connection = self.connection
        if response.headers_sent and not response.pending:
            connection.worker.log.exception("Error handling request %s", self.target)
            return
        connection.worker.handle_error(None, connection.client, connection.addr, exc)


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
