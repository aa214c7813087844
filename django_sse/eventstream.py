"""A parser for ``text/event-stream``, written from the WHATWG spec (for tests).

It does what a browser's ``EventSource`` does with the bytes it receives
(HTML Living Standard, "Server-sent events": 9.2.5 "Parsing an event stream"
and 9.2.6 "Interpreting an event stream"), so tests can assert on what a
client would see rather than on the bytes a server happens to write. It is
independent of the encoder (``django_sse.sse``), which the library's own
tests check against it; ``django_sse.testing`` reads streams with it.

Feed it bytes as they come off the wire; a chunk may end anywhere, even inside
a UTF-8 sequence or between the CR and LF of a CRLF::

    parser = SseParser()
    for chunk in response.streaming_content:
        for event in parser.feed(chunk):
            ...

or parse a whole stream at once with ``parse(data)``.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "ParseResult", "SseParser", "parse"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ASCII_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Event:
    """One dispatched event, as a ``MessageEvent`` would carry it."""

    type: str
    data: str
    last_event_id: str

    def json(self) -> Any:
        """Return ``data`` decoded as JSON (what ``send_event`` encodes non-string data as)."""
        return json.loads(self.data)


@dataclass
class ParseResult:
    """What a client knows after a whole stream: its events and connection state."""

    events: list[Event]
    retry: int | None
    last_event_id: str
    comments: list[str] = field(default_factory=list)


class SseParser:
    """Incremental event-stream parser: ``feed(bytes)`` returns the events it dispatched.

    State a client keeps across events is exposed as attributes:
    ``last_event_id`` (the event source's last event ID string, which a client
    would send as ``Last-Event-ID``), ``retry`` (the reconnection time in ms,
    ``None`` until the stream sets one) and ``events`` (everything dispatched
    so far). ``comments`` records comment lines, which a client ignores; tests
    use it to see heartbeats.
    """

    def __init__(self, last_event_id: str = "") -> None:
        # 9.2.5: "Streams must be decoded using the UTF-8 decode algorithm", which
        # replaces invalid sequences with U+FFFD; the incremental decoder keeps a
        # sequence split across chunks.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_stream_start = True
        self._partial_line = ""
        self._skip_lf = False  # the previous chunk ended in CR; a leading LF ends the same line
        self._data_buffer = ""
        self._event_type_buffer = ""
        self._last_event_id_buffer = last_event_id
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.events: list[Event] = []
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse ``chunk`` and return the events it completed (possibly none)."""
        return self._feed_text(self._decoder.decode(bytes(chunk)))

    def close(self) -> list[Event]:
        """End the stream: flush the decoder and discard any incomplete event."""
        dispatched = self._feed_text(self._decoder.decode(b"", final=True))
        # 9.2.6: "Once the end of the file is reached, any pending data must be
        # discarded. (If the file ends in the middle of an event, before the final
        # empty line, the incomplete event is not dispatched.)" An unterminated
        # last line is never processed either.
        self._partial_line = ""
        self._data_buffer = ""
        self._event_type_buffer = ""
        return dispatched

    def result(self) -> ParseResult:
        """Return everything dispatched so far, with the connection state."""
        return ParseResult(list(self.events), self.retry, self.last_event_id, list(self.comments))

    def _feed_text(self, text: str) -> list[Event]:
        if not text:
            return []
        if self._at_stream_start:
            # UTF-8 decode strips one leading BOM; the stream grammar allows it
            # once, at the very start.
            self._at_stream_start = False
            if text.startswith("\ufeff"):
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        text = self._partial_line + text
        dispatched: list[Event] = []
        start = 0
        # 9.2.5: lines end in CRLF, a lone LF or a lone CR.
        for match in _LINE_BREAK.finditer(text):
            event = self._process_line(text[start : match.start()])
            if event is not None:
                dispatched.append(event)
            start = match.end()
        self._partial_line = text[start:]
        # A CR at the very end may be the first half of a CRLF split across chunks.
        self._skip_lf = text.endswith("\r")
        return dispatched

    def _process_line(self, line: str) -> Event | None:
        # 9.2.6: "If the line is empty (a blank line): Dispatch the event."
        if line == "":
            return self._dispatch()
        # "If the line starts with a U+003A COLON character (:): Ignore the line."
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        # "If the line contains a U+003A COLON character": field is before the
        # first colon, value after it, minus one leading U+0020 SPACE.
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        # "Otherwise ... using the whole line as the field name, and the empty
        # string as the field value" (partition already gives that).
        self._process_field(name, value)
        return None

    def _process_field(self, name: str, value: str) -> None:
        # Field names are compared literally, with no case folding.
        if name == "event":
            # "Set the event type buffer to field value."
            self._event_type_buffer = value
        elif name == "data":
            # "Append the field value to the data buffer, then append a single
            # U+000A LINE FEED (LF) character to the data buffer."
            self._data_buffer += value + "\n"
        elif name == "id":
            # "If the field value does not contain U+0000 NULL, then set the last
            # event ID buffer to the field value. Otherwise, ignore the field."
            if "\x00" not in value:
                self._last_event_id_buffer = value
        elif name == "retry":
            # "If the field value consists of only ASCII digits, then interpret the
            # field value as an integer in base ten, and set the event stream's
            # reconnection time to that integer. Otherwise, ignore the field."
            if _ASCII_DIGITS.fullmatch(value):
                self.retry = int(value)
        # "Otherwise: The field is ignored."

    def _dispatch(self) -> Event | None:
        # Dispatch step 1: set the last event ID string to the last event ID
        # buffer (which is not reset), even if no event is fired.
        self.last_event_id = self._last_event_id_buffer
        # Step 2: "If the data buffer is an empty string, set the data buffer and
        # the event type buffer to the empty string and return."
        if self._data_buffer == "":
            self._event_type_buffer = ""
            return None
        # Step 3: remove one trailing LF from the data buffer.
        data = self._data_buffer
        if data.endswith("\n"):
            data = data[:-1]
        # Steps 5-6: type is "message" unless the event type buffer is non-empty;
        # lastEventId is the last event ID string.
        event = Event(
            type=self._event_type_buffer or "message",
            data=data,
            last_event_id=self.last_event_id,
        )
        # Step 7: "Set the data buffer and the event type buffer to the empty string."
        self._data_buffer = ""
        self._event_type_buffer = ""
        self.events.append(event)
        return event


def parse(stream: bytes | str, last_event_id: str = "") -> ParseResult:
    """Parse a complete stream (``str`` is UTF-8 encoded first) and return the result."""
    if isinstance(stream, str):
        stream = stream.encode("utf-8")
    parser = SseParser(last_event_id=last_event_id)
    parser.feed(stream)
    parser.close()
    return parser.result()
