"""The plain HTTP/1.1 requests that the optional worker serves itself (``worker.py``).

An ``EventSource`` asks for a stream with a bodiless ``GET``: a request line
and a few headers. ``parse_simple_head()`` accepts exactly that and nothing
more: a ``GET`` or ``HEAD`` in origin form, HTTP/1.0 or 1.1, header names that
are tokens without underscores, visible field values, within gunicorn's
limits, and none of the headers that give a request a body, an upgrade, an
expectation or a trusted-proxy meaning. Anything else, valid or not, returns
None and goes to gunicorn's own parser, which answers it as usual (a body, an
upgrade, a 400 for a malformed request). So the fast path never has to decide
what a doubtful request means; it only has to recognise a plain one.

``response_head()`` writes the status line and headers of the answer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate

# RFC 9110 token characters; a request target in origin form, visible ASCII, no fragment.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[!$-~]*")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_VERSIONS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/1.0": "HTTP/1.0"}
# Headers whose meaning gunicorn's request path handles: a body, a switch of
# protocol, an expectation.
_NOT_SIMPLE = frozenset(
    {"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "TE"}
)


@dataclass(slots=True)
class SimpleHead:
    """A plain request head: method, raw target, protocol, headers (names upper-cased)."""

    method: str
    target: str
    protocol: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (upper case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Limits:
    """gunicorn's request limits (``limit_request_line`` and friends; 0: no limit)."""

    line: int = 4094
    fields: int = 100
    field_size: int = 8190
    excluded: frozenset[str] = frozenset()  # e.g. secure_scheme_headers, forwarder_headers


def parse_simple_head(raw: bytes, limits: Limits) -> SimpleHead | None:
    """Return the head of a plain bodiless GET/HEAD (``raw`` without its blank line), or None."""
    lines = raw.split(b"\r\n")
    request_line = lines[0]
    if limits.line and len(request_line) > limits.line:
        return None
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if method not in _METHODS or version not in _VERSIONS or not _TARGET.fullmatch(target):
        return None
    if limits.fields and len(lines) - 1 > limits.fields:
        return None
    headers = []
    for line in lines[1:]:
        if limits.field_size and len(line) > limits.field_size:
            return None
        name, colon, value = line.partition(b":")
        # No underscores: gunicorn drops or refuses such names (header_map); no
        # whitespace before the colon; no obsolete line folding.
        if not colon or not _TOKEN.fullmatch(name):
            return None
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            return None
        key = name.decode("ascii").upper()
        if key in _NOT_SIMPLE or key in limits.excluded:
            return None
        headers.append((key, value.decode("latin-1")))
    return SimpleHead(_METHODS[method], target.decode("ascii"), _VERSIONS[version], headers)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """Return the ``Date`` header's value for now (formatted once per second)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def response_head(status: str, headers: list[tuple[str, str]], extra: str) -> bytes:
    """Return the status line and headers, with ``extra`` (already CRLF-terminated) appended.

    Raises ``ValueError`` for a header that would split the response (CR or LF
    in a name or value): the application's error, answered with a 500.
    """
    lines = [f"HTTP/1.1 {status}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"invalid response header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    lines.append(extra)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
