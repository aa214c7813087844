"""Tests of the wire format encoder, ``django_sse.sse``.

Exact bytes are checked against tables; what a browser would make of them is
checked with ``django_sse.eventstream``, a reference implementation of the WHATWG
parsing rules, which has its own conformance tests at the end of this file.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_sse.eventstream import Event, SseParser, parse
from django_sse.sse import (
    Sse,
    encode_comment,
    encode_data,
    encode_event,
    encode_retry,
    validate_event_id,
    validate_event_name,
)

# --- helpers ---------------------------------------------------------------


def _normalise_newlines(text: str) -> str:
    """Return ``text`` as a browser receives it: CR and CRLF become LF."""
    return re.sub(r"\r\n?", "\n", text)


def _client_view(sse: Sse):
    """Return what a client parses from everything buffered in ``sse``."""
    return parse(sse.take())


# Characters that have broken SSE encoders: line breaks the spec knows, line
# breaks it does not (str.splitlines splits on these), NUL, spaces, a colon,
# a BOM, astral-plane emoji; CRLF is added as a unit.
_TRICKY = "\r\n\u2028\u2029\x85\x0b\x0c\x1c\x00 :\ufeff😀"
_chars = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(_TRICKY))
payloads = st.lists(st.one_of(st.text(alphabet=_chars), st.just("\r\n"))).map("".join)
valid_names = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"))
valid_ids = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00")
)


def _with_one_of(forbidden: str):
    """Return a strategy of strings containing at least one of ``forbidden``."""
    text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
    return st.tuples(text, st.sampled_from(list(forbidden)), text).map("".join)


# --- exact bytes ------------------------------------------------------------

MESSAGE_CASES = [
    # (event, data, expected bytes)
    ("ping", "hello", b"event: ping\ndata: hello\n\n"),
    (None, "hello", b"data: hello\n\n"),
    ("", "hello", b"event: \ndata: hello\n\n"),
    (" x", "y", b"event:  x\ndata: y\n\n"),
    ("é", "y", "event: é\ndata: y\n\n".encode()),
    (None, "", b"data: \n\n"),
    (None, "a\nb", b"data: a\ndata: b\n\n"),
    (None, "a\r\nb", b"data: a\ndata: b\n\n"),
    (None, "a\rb", b"data: a\ndata: b\n\n"),
    (None, "a\n\nb", b"data: a\ndata: \ndata: b\n\n"),
    (None, "a\r\n\rb", b"data: a\ndata: \ndata: b\n\n"),
    (None, "a\n", b"data: a\ndata: \n\n"),
    (None, "\n", b"data: \ndata: \n\n"),
    (None, "  two", b"data:   two\n\n"),
    (None, ": not a comment", b"data: : not a comment\n\n"),
    (None, "a\u2028b\x85c\x0bd", "data: a\u2028b\x85c\x0bd\n\n".encode()),
    (None, "é😀", "data: é😀\n\n".encode()),
    (None, "\x00", b"data: \x00\n\n"),
    (None, b"raw", b"data: raw\n\n"),
    (None, "é".encode(), "data: é\n\n".encode()),
    (None, bytearray(b"a\nb"), b"data: a\ndata: b\n\n"),
    (None, {"a": 1}, b'data: {"a":1}\n\n'),
    (None, [1, "é"], 'data: [1,"é"]\n\n'.encode()),
    (None, 5, b"data: 5\n\n"),
    (None, None, b"data: null\n\n"),
    (None, {"s": "a\nb"}, b'data: {"s":"a\\nb"}\n\n'),
]


@pytest.mark.parametrize(("event", "data", "expected"), MESSAGE_CASES)
def test_add_message_writes_exact_bytes(event, data, expected):
    """add_message buffers exactly the expected bytes."""
    sse = Sse()
    sse.add_message(event, data)
    assert sse.take() == expected


METHOD_CASES = [
    pytest.param(lambda s: s.add_message("x", "y", event_id="7"), b"id: 7\nevent: x\ndata: y\n\n"),
    pytest.param(lambda s: s.add_comment(), b":\n"),
    pytest.param(lambda s: s.add_comment("hi"), b": hi\n"),
    pytest.param(lambda s: s.add_comment("a\r\nb\n"), b": a\n: b\n:\n"),
    pytest.param(lambda s: s.set_retry(0), b"retry: 0\n\n"),
    pytest.param(lambda s: s.set_retry(3000), b"retry: 3000\n\n"),
    pytest.param(lambda s: s.reset_event_id(), b"id\n\n"),
    pytest.param(lambda s: s.set_event_id("5"), b""),
    pytest.param(lambda s: (s.set_event_id("5"), s.add_message(None, "y")), b"id: 5\ndata: y\n\n"),
    pytest.param(lambda s: (s.set_event_id(42), s.add_message(None, "y")), b"id: 42\ndata: y\n\n"),
    pytest.param(lambda s: (s.set_event_id(""), s.add_message(None, "y")), b"id: \ndata: y\n\n"),
    pytest.param(
        lambda s: (s.set_event_id("5"), s.add_message(None, "y", event_id="6")),
        b"id: 6\ndata: y\n\n",
    ),
    pytest.param(
        lambda s: (s.set_event_id("5"), s.set_event_id(None), s.add_message(None, "y")),
        b"data: y\n\n",
    ),
]


@pytest.mark.parametrize(("build", "expected"), METHOD_CASES)
def test_sse_methods_write_exact_bytes(build, expected):
    """Each Sse method (and set_event_id's effect on add_message) buffers exact bytes."""
    sse = Sse()
    build(sse)
    assert sse.take() == expected


def test_default_retry_is_buffered_first():
    """Sse(default_retry=...) starts the buffer with a retry field."""
    sse = Sse(default_retry=1500)
    sse.add_message(None, "x")
    assert sse.take() == b"retry: 1500\n\ndata: x\n\n"


def test_no_default_retry_buffers_nothing():
    """Sse() starts with an empty buffer."""
    assert Sse().take() == b""


@pytest.mark.parametrize(
    ("event", "text", "event_id", "expected"),
    [
        (None, "a", None, "data: a\n\n"),
        ("e", "a", None, "event: e\ndata: a\n\n"),
        ("e", "a", "1", "id: 1\nevent: e\ndata: a\n\n"),
        (None, "", "", "id: \ndata: \n\n"),
        ("", "a\r\n\rb", None, "event: \ndata: a\ndata: \ndata: b\n\n"),
    ],
)
def test_encode_event_writes_exact_text(event, text, event_id, expected):
    """encode_event writes id, event, then one data field per line."""
    assert encode_event(event, text, event_id) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":\n"),
        ("keep-alive", ": keep-alive\n"),
        ("a\n\nb", ": a\n:\n: b\n"),
        ("a\rb", ": a\n: b\n"),
    ],
)
def test_encode_comment_writes_exact_text(text, expected):
    """encode_comment writes one comment line per line of text."""
    assert encode_comment(text) == expected


@pytest.mark.parametrize(
    ("milliseconds", "expected"), [(0, "retry: 0\n\n"), (10**12, "retry: 1000000000000\n\n")]
)
def test_encode_retry_writes_exact_text(milliseconds, expected):
    """encode_retry writes one retry field and a blank line."""
    assert encode_retry(milliseconds) == expected


def test_comment_is_not_an_event():
    """A comment dispatches nothing on the client."""
    sse = Sse()
    sse.add_comment("keep-alive")
    result = _client_view(sse)
    assert result.events == []
    assert result.comments == [" keep-alive"]


# --- the defects of PyPI sse 1.2 --------------------------------------------


def test_unicode_line_separator_is_not_a_line_break():
    """(a) U+2028 and U+0085 stay inside one data line (sse 1.2 used str.splitlines)."""
    sse = Sse()
    sse.add_message("x", "a\u2028b\x85c")
    assert _client_view(sse).events == [Event("x", "a\u2028b\x85c", "")]


def test_empty_data_is_dispatched():
    """(b) An event with empty data still has a data field, so the browser fires it."""
    sse = Sse()
    sse.add_message("ping", "")
    assert _client_view(sse).events == [Event("ping", "", "")]


def test_event_name_cannot_inject_fields():
    """(c) An event name containing LF is rejected and nothing is buffered."""
    sse = Sse()
    with pytest.raises(ValueError, match="event name"):
        sse.add_message("x\ndata: forged", "real")
    assert sse.take() == b""


def test_dict_is_sent_as_json():
    """(d) A dict is JSON-encoded instead of crashing."""
    sse = Sse()
    sse.add_message("x", {"a": [1, "b"], "c": None})
    (event,) = _client_view(sse).events
    assert json.loads(event.data) == {"a": [1, "b"], "c": None}


def test_trailing_newline_is_kept():
    """(e) A trailing newline survives to the client's event.data."""
    sse = Sse()
    sse.add_message("x", "line\n")
    assert _client_view(sse).events == [Event("x", "line\n", "")]


# --- data encoding ----------------------------------------------------------

JSON_CASES = [
    pytest.param({"n": 1, "s": "é"}, {"n": 1, "s": "é"}, id="dict"),
    pytest.param(
        datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc),
        "2024-01-02T03:04:05.678Z",
        id="datetime",
    ),
    pytest.param(datetime.date(2024, 1, 2), "2024-01-02", id="date"),
    pytest.param(decimal.Decimal("1.10"), "1.10", id="decimal"),
    pytest.param(
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "12345678-1234-5678-1234-567812345678",
        id="uuid",
    ),
    pytest.param(
        {"when": [datetime.date(2024, 1, 2)], "amount": {"v": decimal.Decimal("3")}, "ok": True},
        {"when": ["2024-01-02"], "amount": {"v": "3"}, "ok": True},
        id="nested",
    ),
]


@pytest.mark.parametrize(("value", "decoded"), JSON_CASES)
def test_non_text_data_is_django_json(value, decoded):
    """Dicts, dates, Decimals and UUIDs reach the client as DjangoJSONEncoder JSON."""
    sse = Sse()
    sse.add_message("x", value)
    (event,) = _client_view(sse).events
    assert json.loads(event.data) == decoded


def test_json_is_compact_and_not_ascii_escaped():
    """JSON data has no spaces after separators and keeps non-ASCII characters."""
    assert encode_data({"a": ["é", 1]}) == '{"a":["é",1]}'


def test_custom_json_encoder_is_used():
    """Sse(json_encoder=...) encodes data with that encoder."""

    class SetEncoder(json.JSONEncoder):
        def default(self, o):
            if isinstance(o, set):
                return sorted(o)
            return super().default(o)

    sse = Sse(json_encoder=SetEncoder)
    sse.add_message(None, {3, 1, 2})
    assert sse.take() == b"data: [1,2,3]\n\n"


@pytest.mark.parametrize(
    "value", [object(), {"a": object()}, {1, 2}], ids=["object", "nested-object", "set"]
)
def test_unencodable_data_raises_type_error(value):
    """Data that cannot be JSON-encoded raises TypeError saying so, and buffers nothing."""
    sse = Sse()
    with pytest.raises(TypeError, match="cannot be encoded as JSON"):
        sse.add_message("x", value)
    assert sse.take() == b""


def test_circular_data_raises_type_error():
    """A self-referencing list raises TypeError rather than ValueError."""
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match="cannot be encoded as JSON"):
        encode_data(loop)


@pytest.mark.parametrize("outer", [list, dict], ids=["lists", "dicts"])
def test_deeply_nested_data_raises_type_error(outer):
    """Nesting past Python's recursion limit raises the documented TypeError, not RecursionError."""
    data = deeply_nested(outer)
    with pytest.raises(TypeError, match="cannot be encoded as JSON: it is nested too deeply"):
        encode_data(data)
    sse = Sse()
    with pytest.raises(TypeError, match="nested too deeply"):
        sse.add_message("x", data)
    assert sse.take() == b""


def deeply_nested(outer: type, depth: int = 100_000) -> object:
    """Return ``depth`` lists (or dicts) each inside the next: far past any recursion limit."""
    data: object = outer()
    for _ in range(depth):
        data = [data] if outer is list else {"a": data}
    return data


@pytest.mark.parametrize(
    "value", [b"\xff", b"a\xc3", bytearray(b"\xed\xa0\x80")], ids=["ff", "truncated", "surrogate"]
)
def test_non_utf8_bytes_raise_value_error(value):
    """Bytes that are not UTF-8 raise ValueError, and nothing is buffered."""
    sse = Sse()
    with pytest.raises(ValueError, match="UTF-8"):
        sse.add_message("x", value)
    assert sse.take() == b""


def test_str_with_lone_surrogate_raises_value_error():
    """A str that cannot be written as UTF-8 is rejected when added, not when taken."""
    sse = Sse()
    with pytest.raises(ValueError, match="UTF-8"):
        sse.add_message("x", "a\ud800")
    assert sse.take() == b""


def test_json_with_lone_surrogate_raises_when_added():
    """JSON data holding a lone surrogate is rejected by add_message, not by take()."""
    sse = Sse()
    with pytest.raises((ValueError, TypeError)):
        sse.add_message("x", {"a": "\ud800"})
    assert sse.take() == b""


def test_explicit_event_id_with_lone_surrogate_raises_when_added():
    """An explicit event_id holding a lone surrogate is rejected by add_message."""
    sse = Sse()
    with pytest.raises(ValueError):
        sse.add_message(None, "x", event_id="\udc00")
    assert sse.take() == b""


def test_non_str_event_name_raises_type_error():
    """A non-str event name raises TypeError naming the field."""
    with pytest.raises(TypeError, match="event name"):
        Sse().add_message(5, "x")


# --- names, ids and retry ---------------------------------------------------


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\r\nb", "\n", "x\ndata: forged"])
def test_event_name_with_line_break_raises(name):
    """Event names containing CR or LF raise ValueError naming the field."""
    with pytest.raises(ValueError, match="event name"):
        validate_event_name(name)


@pytest.mark.parametrize("event_id", ["a\nb", "a\rb", "\x00", "1\x002"])
def test_event_id_with_line_break_or_nul_raises(event_id):
    """Event ids containing CR, LF or NUL raise ValueError naming the field."""
    with pytest.raises(ValueError, match="event id"):
        validate_event_id(event_id)
    with pytest.raises(ValueError, match="event id"):
        Sse().set_event_id(event_id)


@pytest.mark.parametrize("value", [-1, 1.5, 2.0, "100", None, True, False], ids=repr)
def test_invalid_retry_raises(value):
    """retry must be a non-negative int; bools, floats and strings are rejected."""
    sse = Sse()
    with pytest.raises(ValueError, match="retry"):
        sse.set_retry(value)
    assert sse.take() == b""


def test_set_event_id_is_sticky():
    """The id set with set_event_id is written on every following message."""
    sse = Sse()
    sse.set_event_id("7")
    sse.add_message("a", "1")
    sse.add_message("b", "2")
    result = _client_view(sse)
    assert result.events == [Event("a", "1", "7"), Event("b", "2", "7")]
    assert result.last_event_id == "7"


def test_reset_event_id_clears_client_last_event_id():
    """reset_event_id makes the client's last event id empty and stops sending ids."""
    sse = Sse()
    sse.set_event_id("7")
    sse.add_message("a", "1")
    sse.reset_event_id()
    after_reset = parse(sse.take())
    assert after_reset.last_event_id == ""
    sse.add_message("b", "2")
    chunk = sse.take()
    assert b"id" not in chunk
    parser = SseParser(last_event_id="7")
    assert parser.feed(b"id\n\n" + chunk) == [Event("b", "2", "")]


def test_reset_event_id_dispatches_nothing():
    """The reset block has no data, so the client fires no event for it."""
    sse = Sse()
    sse.reset_event_id()
    assert parse(sse.take(), last_event_id="9").events == []


# --- the buffer -------------------------------------------------------------


def test_iteration_yields_chunks_and_empties_buffer():
    """Iterating yields one chunk per buffered item, then the buffer is empty."""
    sse = Sse()
    sse.add_message("a", "1")
    sse.add_comment("c")
    assert list(sse) == ["event: a\ndata: 1\n\n", ": c\n"]
    assert list(sse) == []
    assert str(sse) == ""


def test_str_shows_buffer_without_emptying_it():
    """str() joins the buffer and leaves it in place."""
    sse = Sse()
    sse.set_retry(10)
    sse.add_message(None, "x")
    assert str(sse) == "retry: 10\n\ndata: x\n\n"
    assert str(sse) == "retry: 10\n\ndata: x\n\n"
    assert bool(sse) is True


def test_flush_discards_buffer():
    """flush() drops everything buffered."""
    sse = Sse()
    sse.add_message("a", "1")
    sse.flush()
    assert str(sse) == ""
    assert not sse
    assert list(sse) == []


def test_take_returns_bytes_and_empties_buffer():
    """take() returns the buffer as UTF-8 bytes, then the buffer is empty."""
    sse = Sse()
    sse.add_message("é", "😀")
    assert sse.take() == "event: é\ndata: 😀\n\n".encode()
    assert sse.take() == b""


def test_messages_added_during_iteration_are_kept():
    """A message added while iterating is not lost with the iterated chunks."""
    sse = Sse()
    sse.add_message(None, "1")
    chunks = []
    for chunk in sse:
        chunks.append(chunk)
        sse.add_message(None, "2")
    assert chunks == ["data: 1\n\n"]
    assert str(sse) == "data: 2\n\n"


# --- properties -------------------------------------------------------------


@given(
    text=payloads, event=st.one_of(st.none(), valid_names), event_id=st.one_of(st.none(), valid_ids)
)
def test_any_payload_round_trips(text, event, event_id):
    """parse(encode(x)) gives back x's name, id and data (CR and CRLF as LF)."""
    sse = Sse()
    sse.add_message(event, text, event_id=event_id)
    result = _client_view(sse)
    assert result.events == [Event(event or "message", _normalise_newlines(text), event_id or "")]


@given(texts=st.lists(payloads, min_size=1, max_size=5), event_id=valid_ids)
def test_consecutive_messages_round_trip(texts, event_id):
    """Several messages with a sticky id arrive as the same number of events, in order."""
    sse = Sse()
    sse.set_event_id(event_id)
    for text in texts:
        sse.add_message(None, text)
    result = _client_view(sse)
    assert result.events == [Event("message", _normalise_newlines(t), event_id) for t in texts]


@given(text=payloads)
def test_any_data_round_trips_through_encode_data(text):
    """str data is passed through unchanged and bytes are decoded back to it."""
    assert encode_data(text) == text
    assert encode_data(text.encode()) == text


@given(name=_with_one_of("\r\n"))
def test_any_name_with_line_break_raises(name):
    """Every event name containing CR or LF raises ValueError naming the field."""
    with pytest.raises(ValueError, match="event name"):
        Sse().add_message(name, "x")


@given(event_id=_with_one_of("\r\n\x00"))
def test_any_id_with_line_break_or_nul_raises(event_id):
    """Every event id containing CR, LF or NUL raises ValueError naming the field."""
    with pytest.raises(ValueError, match="event id"):
        Sse().add_message(None, "x", event_id=event_id)
    with pytest.raises(ValueError, match="event id"):
        Sse().set_event_id(event_id)


@given(milliseconds=st.integers(min_value=0, max_value=10**30))
def test_retry_round_trips(milliseconds):
    """Any non-negative int retry becomes the client's reconnection time."""
    sse = Sse()
    sse.set_retry(milliseconds)
    result = _client_view(sse)
    assert result.retry == milliseconds
    assert result.events == []


@given(value=st.one_of(st.integers(max_value=-1), st.floats(), st.text(), st.booleans(), st.none()))
def test_invalid_retry_always_raises(value):
    """Negative ints and non-ints are rejected as retry values."""
    with pytest.raises(ValueError, match="retry"):
        encode_retry(value)


@given(
    text=payloads,
    event=valid_names,
    event_id=valid_ids,
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_chunked_stream_parses_like_whole_stream(text, event, event_id, cuts):
    """Feeding bytes in arbitrary chunks (even mid-character or mid-CRLF) changes nothing."""
    sse = Sse()
    sse.add_comment("hi")
    sse.add_message(event, text, event_id=event_id)
    sse.set_retry(5)
    stream = sse.take()
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    parser = SseParser()
    for start, end in zip(points, points[1:], strict=False):
        parser.feed(stream[start:end])
    parser.close()
    assert parser.result() == parse(stream)


# --- the reference parser (django_sse.eventstream) --------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # Examples from the WHATWG spec, 9.2.6.
        ("data: YHOO\ndata: +2\ndata: 10\n\n", [Event("message", "YHOO\n+2\n10", "")]),
        (
            ": test stream\n\ndata: first event\nid: 1\n\n"
            "data:second event\nid\n\ndata:  third event\n",
            [Event("message", "first event", "1"), Event("message", "second event", "")],
        ),
        ("data\n\ndata\ndata\n\ndata:", [Event("message", "", ""), Event("message", "\n", "")]),
        (
            "data:test\n\ndata: test\n\n",
            [Event("message", "test", ""), Event("message", "test", "")],
        ),
        # Line endings, BOM, field parsing.
        ("data: a\r\ndata: b\rdata: c\n\r\n", [Event("message", "a\nb\nc", "")]),
        ("\ufeffdata: x\n\n", [Event("message", "x", "")]),
        ("\ufeff\ufeffdata: x\n\n", []),
        ("Data: x\n\ndata: y\n\n", [Event("message", "y", "")]),
        (
            "event: a\nevent: b\ndata: x\n\ndata: y\n\n",
            [Event("b", "x", ""), Event("message", "y", "")],
        ),
        ("event:\ndata: x\n\n", [Event("message", "x", "")]),
        ("id: 1\x002\ndata: x\n\n", [Event("message", "x", "")]),
        ("id: 3\n\ndata: x\n\n", [Event("message", "x", "3")]),
        ("data: x\nid: 4\n", []),
    ],
)
def test_parser_follows_spec(stream, expected):
    """The reference parser dispatches what the WHATWG algorithm dispatches."""
    assert parse(stream).events == expected


@pytest.mark.parametrize(
    ("stream", "retry"),
    [("retry: 10\n", 10), ("retry: 1.5\n", None), ("retry: -1\n", None), ("retry: ١\n", None)],
)
def test_parser_retry_accepts_only_ascii_digits(stream, retry):
    """retry is set only by a value made of ASCII digits."""
    assert parse(stream).retry == retry


def test_parser_updates_last_event_id_without_dispatching():
    """A block with an id but no data updates the last event id and fires nothing."""
    result = parse("id: 5\n\n")
    assert result.events == []
    assert result.last_event_id == "5"


def test_parser_handles_crlf_split_across_chunks():
    """A CR at the end of one chunk and LF at the start of the next are one line break."""
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r\n") == [Event("message", "a\nb", "")]


def test_parser_replaces_invalid_utf8():
    """Invalid UTF-8 becomes U+FFFD, as the UTF-8 decode algorithm does."""
    assert parse(b"data: \xff\n\n").events == [Event("message", "\ufffd", "")]
