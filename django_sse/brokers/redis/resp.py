"""A minimal RESP2 client for the one pub/sub connection of a process.

redis-py serves the ordinary commands; this connection only sends
SUBSCRIBE/UNSUBSCRIBE/PING and reads what Redis pushes, where a small
parser that hands over every buffered reply at once keeps the cost per
message low and lets the hub fan out a whole burst before streams write.
Blocking socket calls only, so gevent (patched sockets) and threads both work.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from ...core.concurrency import new_lock

_CRLF = b"\r\n"
# A RESP number as hiredis reads it: canonical decimal, a 64-bit signed value
# (int() would take "1_0", " 12", "+3" or "007").
_NUMBER = re.compile(rb"0|-?[1-9][0-9]{0,18}")
_INT64 = range(-(2**63), 2**63)
_KINDS = frozenset(b"$*:+-")


class RespError(Exception):
    """An error reply from Redis (e.g. ``NOAUTH``, ``WRONGPASS``)."""


class RespProtocolError(RespError):
    """Bytes from the server that are not RESP2: the connection is out of step, drop it."""


class _Incomplete(Exception):
    pass


class RespParser:
    """Parses RESP2 replies from bytes fed in as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every reply it completes, in order."""
        self._buffer += data
        replies = []
        position = 0
        buffer = self._buffer
        try:
            while position < len(buffer):
                reply, position_after = self._parse(buffer, position)
                replies.append(reply)
                position = position_after
        except _Incomplete:
            pass
        del buffer[:position]
        return replies

    def _parse(self, buffer: bytearray, position: int) -> tuple[Any, int]:
        if position >= len(buffer):
            raise _Incomplete
        kind = buffer[position]
        if kind not in _KINDS:
            raise RespProtocolError(f"Unexpected RESP type byte {bytes([kind])!r} from Redis.")
        end = buffer.find(_CRLF, position)
        if end < 0:
            raise _Incomplete
        line = bytes(buffer[position + 1 : end])
        if b"\r" in line or b"\n" in line:
            raise RespProtocolError(f"A line from Redis holds a bare CR or LF: {line!r}.")
        position = end + 2
        if kind == 0x24:  # $ bulk string
            length = _number(line, "bulk string length")
            if length < 0:
                _check_null(length, "bulk string length")
                return None, position
            if len(buffer) < position + length + 2:
                raise _Incomplete
            after = position + length
            if buffer[after : after + 2] != _CRLF:
                raise RespProtocolError(
                    f"A bulk string of {length} bytes from Redis is not followed by CRLF."
                )
            return bytes(buffer[position:after]), after + 2
        if kind == 0x2A:  # * array
            count = _number(line, "array length")
            if count < 0:
                _check_null(count, "array length")
                return None, position
            items = []
            for _ in range(count):
                item, position = self._parse(buffer, position)
                items.append(item)
            return items, position
        if kind == 0x3A:  # : integer
            return _number(line, "integer"), position
        if kind == 0x2B:  # + simple string
            try:
                return line.decode(), position
            except UnicodeDecodeError:
                raise RespProtocolError(
                    f"A simple string from Redis is not UTF-8: {line!r}."
                ) from None
        if kind == 0x2D:  # - error
            return RespError(line.decode(errors="replace")), position
        raise RespProtocolError(f"Unexpected RESP type byte {bytes([kind])!r} from Redis.")


def _number(line: bytes, what: str) -> int:
    if not _NUMBER.fullmatch(line) or (number := int(line)) not in _INT64:
        raise RespProtocolError(f"The {what} from Redis is not a 64-bit integer: {line!r}.")
    return number


def _check_null(length: int, what: str) -> None:
    """Accept a length of -1 (the null reply); refuse any other negative one."""
    if length != -1:
        raise RespProtocolError(f"The {what} from Redis is negative: {length}.")


def encode_command(*args: str | bytes) -> bytes:
    """Return ``args`` as a RESP2 command."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8") if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def tls_context(params: dict[str, Any]) -> ssl.SSLContext:
    """Return the TLS context for a ``rediss://`` URL's parameters, as redis-py reads them.

    The URL's query gives them: ``ssl_ca_certs`` (a CA file; default: the
    system's), ``ssl_certfile`` and ``ssl_keyfile`` (a client certificate),
    ``ssl_cert_reqs=none`` (no verification, for tests only) and
    ``ssl_check_hostname=false``. The subscriber and the command connections
    then trust the same certificates.
    """
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    if params.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif params.get("ssl_check_hostname") is False:
        context.check_hostname = False
    return context


class PubSubConnection:
    """One connection to Redis in subscriber mode."""

    def __init__(self, params: dict[str, Any], connect_timeout: float, idle_timeout: float) -> None:
        self._params = params
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._sock: socket.socket | None = None
        self._send_lock = new_lock()

    def connect(self, address: tuple[str, int] | None = None) -> None:
        """Open the connection and authenticate; raise ``OSError``/``RespError`` on failure.

        ``address`` replaces the parameters' host and port (a Sentinel-managed master).
        """
        params = self._params
        if params.get("path") and address is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout)
            sock.connect(params["path"])
        else:
            host, port = address or (params.get("host", "localhost"), params.get("port", 6379))
            sock = socket.create_connection((host, port), self._connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if params.get("ssl"):
                sock = tls_context(params).wrap_socket(sock, server_hostname=host)
        self._sock = sock
        parser = RespParser()
        if params.get("password"):
            auth = (
                ("AUTH", params["username"], params["password"])
                if params.get("username")
                else ("AUTH", params["password"])
            )
            sock.sendall(encode_command(*auth))
            reply = self._read_one(parser)
            if isinstance(reply, RespError):
                raise reply
        sock.settimeout(self._idle_timeout)
        self._parser = parser

    def request(self, *args: str) -> Any:
        """Send one command and return its reply; only before subscribing (an error is returned)."""
        self.send(*args)
        sock = self._sock
        if sock is not None:
            sock.settimeout(self._connect_timeout)
        try:
            return self._read_one(self._parser)
        finally:
            if sock is not None:
                sock.settimeout(self._idle_timeout)

    def _read_one(self, parser: RespParser) -> Any:
        sock = self._sock
        if sock is None:
            raise ConnectionError("Not connected to Redis.")
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("Redis closed the connection.")
            replies = parser.feed(data)
            if replies:
                return replies[0]

    def send(self, *args: str | bytes) -> bool:
        """Send one command; return False when not connected."""
        sock = self._sock
        if sock is None:
            return False
        with self._send_lock:
            sock.sendall(encode_command(*args))
        return True

    def replies(self) -> Iterator[list[Any]]:
        """Yield batches of replies as they arrive; PING when idle, fail when Redis is silent."""
        pinged = False
        while True:
            sock = self._sock
            if sock is None:
                raise ConnectionError("The Redis subscription was closed.")
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if pinged:
                    raise ConnectionError("Redis did not answer a PING in time.") from None
                self.send("PING")
                pinged = True
                continue
            if not data:
                raise ConnectionError("Redis closed the connection.")
            pinged = False
            yield self._parser.feed(data)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
