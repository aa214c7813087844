"""The Server-Sent Events wire format: a pure encoder, no framework import.

Follows the WHATWG HTML "server-sent events" parsing rules, so that what the
browser's ``EventSource`` dispatches is exactly what was encoded:

* data is split on CRLF, CR and LF only (never on U+2028, U+0085, ...), and
  every line becomes one ``data:`` field. The browser joins them with LF, so
  ``event.data`` equals the original text, except that CR and CRLF arrive as
  LF: the protocol has no way to carry a bare CR.
* every field is written as ``name: value``; the parser strips exactly one
  space after the colon, so values that start with spaces survive.
* event names and ids may not contain CR or LF (they would end the field and
  let the rest inject other fields), and ids may not contain NUL (browsers
  ignore such an id). Both raise ``ValueError`` naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "Sse",
    "encode_comment",
    "encode_data",
    "encode_event",
    "encode_retry",
    "validate_event_id",
    "validate_event_name",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_NAME = re.compile(r"[\r\n]")
_FORBIDDEN_IN_ID = re.compile(r"[\r\n\x00]")


def validate_event_name(event: str | None) -> None:
    """Raise ``ValueError`` unless ``event`` can be written as one ``event:`` field."""
    if event is None:
        return
    if not isinstance(event, str):
        raise TypeError(f"The event name must be a str, not {type(event).__name__}.")
    if _FORBIDDEN_IN_NAME.search(event):
        raise ValueError(f"The event name {event!r} contains CR or LF, which SSE cannot carry.")


def validate_event_id(event_id: str | None) -> None:
    """Raise ``ValueError`` unless ``event_id`` can be written as one ``id:`` field."""
    if event_id is None:
        return
    if not isinstance(event_id, str):
        raise TypeError(f"The event id must be a str, not {type(event_id).__name__}.")
    if _FORBIDDEN_IN_ID.search(event_id):
        raise ValueError(
            f"The event id {event_id!r} contains CR, LF or NUL, which SSE cannot carry."
        )


def _check_utf8(text: str, what: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"The {what} is not encodable as UTF-8: {exc}") from None


def encode_data(data: Any, json_encoder: type[json.JSONEncoder] | None = None) -> str:
    """Return ``data`` as the text an event carries.

    ``str`` is sent as is, ``bytes`` are decoded as UTF-8, anything else is
    JSON-encoded (with Django's ``DjangoJSONEncoder`` when Django is installed,
    so dates, Decimals and UUIDs work). Raise ``TypeError`` when it cannot be:
    a type JSON lacks, a circular reference, or nesting deeper than Python's
    recursion limit.
    """
    if isinstance(data, str):
        _check_utf8(data, "event data")
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"The event data is bytes but not valid UTF-8: {exc}") from None
    encoder = json_encoder or _default_json_encoder()
    try:
        text = json.dumps(
            data, cls=encoder, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The event data of type {type(data).__name__} cannot be encoded as JSON: {exc}"
        ) from None
    except RecursionError:
        raise TypeError(
            f"The event data of type {type(data).__name__} cannot be encoded as JSON: "
            "it is nested too deeply (Python's recursion limit)."
        ) from None
    _check_utf8(text, "event data")
    return text


def _default_json_encoder() -> type[json.JSONEncoder]:
    try:
        from django.core.serializers.json import DjangoJSONEncoder
    except ImportError:  # the encoder is usable without Django
        return json.JSONEncoder
    return DjangoJSONEncoder


def encode_event(event: str | None, text: str, event_id: str | None = None) -> str:
    """Return one complete event block (ending in a blank line) for text data.

    ``text`` must already be a ``str`` (see ``encode_data``); names and ids are
    validated here.
    """
    validate_event_name(event)
    validate_event_id(event_id)
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    for line in _LINE_BREAK.split(text):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts)


def encode_comment(text: str = "") -> str:
    """Return ``text`` as comment lines, which every client ignores."""
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text))


def encode_retry(milliseconds: int) -> str:
    """Return a ``retry:`` field that sets the client's reconnection delay."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise ValueError(
            f"retry must be a non-negative integer of milliseconds, not {milliseconds!r}."
        )
    return f"retry: {milliseconds}\n\n"


class Sse:
    """A buffer of SSE messages, API-compatible with the ``sse`` 1.2 package.

    Add messages, then iterate (or call ``str()``) to take what was buffered.
    Iterating yields the buffered chunks and empties the buffer.
    """

    def __init__(
        self, default_retry: int | None = None, json_encoder: type[json.JSONEncoder] | None = None
    ):
        self._buffer: list[str] = []
        self._event_id: str | None = None
        self._json_encoder = json_encoder
        #: Events added so far (what the metrics count as delivered).
        self.events_added = 0
        if default_retry is not None:
            self.set_retry(default_retry)

    def add_message(self, event: str | None, text: Any, event_id: str | int | None = None) -> None:
        """Buffer one event; ``text`` may be str, bytes or anything JSON-encodable.

        ``event`` None sends an unnamed event (``onmessage``). ``event_id``
        defaults to the id set with ``set_event_id()``.
        """
        data = encode_data(text, self._json_encoder)
        event_id = self._event_id if event_id is None else str(event_id)
        validate_event_name(event)
        validate_event_id(event_id)
        _check_utf8(event or "", "event name")
        _check_utf8(event_id or "", "event id")
        self._buffer.append(encode_event(event, data, event_id))
        self.events_added += 1

    def add_comment(self, text: str = "") -> None:
        """Buffer a comment (ignored by clients; keeps proxies from timing out)."""
        _check_utf8(text, "comment")
        self._buffer.append(encode_comment(text))

    def set_retry(self, milliseconds: int) -> None:
        """Buffer a ``retry:`` field: the client's reconnection delay."""
        self._buffer.append(encode_retry(milliseconds))

    def set_event_id(self, event_id: str | int | None) -> None:
        """Use ``event_id`` for every following message (until reset)."""
        if event_id is not None:
            event_id = str(event_id)
            validate_event_id(event_id)
            _check_utf8(event_id, "event id")
        self._event_id = event_id

    def reset_event_id(self) -> None:
        """Stop sending ids and tell the client to forget its last event id."""
        self._event_id = None
        self._buffer.append("id\n\n")

    def flush(self) -> None:
        """Discard everything buffered."""
        self._buffer = []

    def take(self) -> bytes:
        """Return everything buffered as UTF-8 bytes and empty the buffer."""
        chunk = "".join(self._buffer).encode("utf-8")
        self._buffer = []
        return chunk

    def __iter__(self) -> Iterator[str]:
        buffer, self._buffer = self._buffer, []
        yield from buffer

    def __str__(self) -> str:
        return "".join(self._buffer)

    def __bool__(self) -> bool:
        return bool(self._buffer)
