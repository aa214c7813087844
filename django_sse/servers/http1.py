"""The plain HTTP/1.1 requests that the optional worker serves itself (``worker.py``).

An ``EventSource`` asks for a stream with a bodiless ``GET``: a request line
and a few headers. ``parse_simple_head()`` *recognises* exactly that and
nothing more; it never decides what a doubtful request means. It accepts a
``GET`` or ``HEAD`` in origin form over HTTP/1.1, header names that are
tokens without underscores, field values of visible characters, spaces and
tabs, every line and the number of fields short of gunicorn's limits (so a
request at a limit is gunicorn's to refuse), at most one ``Host`` and one
``Connection`` (``close`` or ``keep-alive``), and none of the headers that
give a request a body, an upgrade, an expectation or a trusted-proxy
meaning. Anything else, valid or not, returns None and goes to gunicorn's
own parser with the bytes exactly as received, which answers it as usual.

``tests/test_http1_differential.py`` sends the same bytes to ``-k gevent``
and to the worker and requires the same answers; a hypothesis fuzzer
mutates that corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 9110 token characters, without "_" (gunicorn refuses or drops such names);
# a request target in origin form: visible ASCII, no fragment.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[!$-~]*")
# What gunicorn accepts in a value (RFC 9110 5.5: VCHAR, obs-text, SP, HTAB).
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_HTTP11 = b"HTTP/1.1"
# Headers whose meaning gunicorn's request path handles: a body, a switch of
# protocol, an expectation, a trailer, a path prefix.
_NOT_SIMPLE = frozenset(
    {"CONTENT-LENGTH", "TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "TE"}
)
# Fields that may appear once (gunicorn answers 400 to a repeat).
_ONCE = frozenset({"HOST", "CONNECTION", "CONTENT-TYPE"})
_CONNECTION_VALUES = frozenset({"close", "keep-alive"})
# gunicorn's own ceilings (gunicorn.http.message): a limit of 0 or above them means these.
_MAX_REQUEST_LINE = 8190
_MAX_FIELD_SIZE = 8190
_MAX_FIELDS = 32768


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
    """gunicorn's request limits (``limit_request_line`` and friends; 0: gunicorn's ceiling).

    ``parse_simple_head`` stays strictly below each: a request that reaches a
    limit exactly is left to gunicorn, whose answer (a 414 or 431, or none)
    is then the only one.
    """

    line: int = 4094
    fields: int = 100
    field_size: int = 8190
    excluded: frozenset[str] = frozenset()  # e.g. secure_scheme_headers, forwarder_headers

    def line_bound(self) -> int:
        """Return the longest request line (without CRLF) left to the short path."""
        limit = self.line if 0 < self.line < _MAX_REQUEST_LINE else _MAX_REQUEST_LINE
        return limit - 1

    def field_bound(self) -> int:
        """Return the longest header line (without CRLF) left to the short path.

        gunicorn counts the CRLF in a field's size.
        """
        limit = self.field_size if self.field_size > 0 else _MAX_FIELD_SIZE
        return limit - 3

    def fields_bound(self) -> int:
        """Return the most header fields left to the short path."""
        limit = self.fields if 0 < self.fields <= _MAX_FIELDS else _MAX_FIELDS
        return limit - 1


def parse_simple_head(raw: bytes, limits: Limits) -> SimpleHead | None:
    """Return the head of a plain bodiless GET/HEAD (``raw`` without its blank line), or None."""
    lines = raw.split(b"\r\n")
    request_line = lines[0]
    if len(request_line) > limits.line_bound() or len(lines) - 1 > limits.fields_bound():
        return None
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    if method not in _METHODS or version != _HTTP11 or not _TARGET.fullmatch(target):
        return None
    field_bound = limits.field_bound()
    headers = []
    seen: set[str] = set()
    for line in lines[1:]:
        if len(line) > field_bound:
            return None
        name, colon, value = line.partition(b":")
        # No whitespace before the colon; no obsolete line folding (a name can't start with SP).
        if not colon or not _TOKEN.fullmatch(name):
            return None
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            return None
        key = name.decode("ascii").upper()
        if key in _NOT_SIMPLE or key in limits.excluded:
            return None
        if key in _ONCE:
            if key in seen:
                return None
            seen.add(key)
        text = value.decode("latin-1")
        if key == "CONNECTION" and text.lower() not in _CONNECTION_VALUES:
            return None
        headers.append((key, text))
    return SimpleHead(_METHODS[method], target.decode("ascii"), "HTTP/1.1", headers)


def head_is_doomed(buffer: bytes) -> bool:
    """Return whether the start of a head in ``buffer`` can never make a plain request.

    A bare LF, or a CR not followed by LF, means gunicorn's answer (a 400) is
    due now, not when more bytes arrive or the keep-alive timeout ends.
    """
    crlf = buffer.count(b"\r\n")
    if buffer.count(b"\n") != crlf:
        return True
    bare_cr = buffer.count(b"\r") - crlf
    return bare_cr > 1 or (bare_cr == 1 and not buffer.endswith(b"\r"))
