"""Unit tests of the RESP2 parser and command encoder, ``django_sse.brokers.redis.resp``.

Every reply kind is checked against a table of exact wire bytes, then fed
again split at every byte boundary and one byte at a time: the parser must
hand over exactly the same replies, and none before its last byte arrives.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_sse.brokers.redis.resp import RespError, RespParser, encode_command

# --- helpers ---------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Return ``value`` with every ``RespError`` replaced by a comparable tuple."""
    if isinstance(value, RespError):
        return ("RespError", str(value))
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _parse_all(data: bytes) -> list[Any]:
    """Return the replies a fresh parser makes of ``data`` fed at once, comparable."""
    return _plain(RespParser().feed(data))


# --- one reply of each kind ---------------------------------------------------

# (wire bytes, the reply parsed from them)
SIMPLE_STRINGS = [
    (b"+OK\r\n", "OK"),
    (b"+PONG\r\n", "PONG"),
    (b"+\r\n", ""),
    (b"+caf\xc3\xa9\r\n", "café"),
    (b"+a b:c\r\n", "a b:c"),
]
ERRORS = [
    (b"-ERR unknown command 'FOO'\r\n", RespError("ERR unknown command 'FOO'")),
    (b"-NOAUTH Authentication required.\r\n", RespError("NOAUTH Authentication required.")),
    (
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        RespError("WRONGPASS invalid username-password pair or user is disabled."),
    ),
    (b"-\r\n", RespError("")),
    (b"-ERR bad \xff byte\r\n", RespError("ERR bad \ufffd byte")),  # replaced, not raised
]
INTEGERS = [
    (b":0\r\n", 0),
    (b":1\r\n", 1),
    (b":1000\r\n", 1000),
    (b":-1\r\n", -1),
    (b":9223372036854775807\r\n", 2**63 - 1),
    (b":-9223372036854775808\r\n", -(2**63)),
]
BULK_STRINGS = [
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # CRLF inside the payload is data
    (b"$2\r\n\r\n\r\n", b"\r\n"),
    (b"$3\r\n\x00\xff\x80\r\n", b"\x00\xff\x80"),  # binary, never decoded
    (b"$4\r\n$1\r\n\r\n", b"$1\r\n"),  # looks like a header, is payload
    (b"$12\r\ncaf\xc3\xa9 cr\xc3\xa8me\r\n", "café crème".encode()),
    (b"$1000\r\n" + b"x" * 1000 + b"\r\n", b"x" * 1000),
]
ARRAYS = [
    (b"*0\r\n", []),
    (b"*-1\r\n", None),
    (b"*1\r\n$4\r\nPING\r\n", [b"PING"]),
    (b"*3\r\n:1\r\n:2\r\n:3\r\n", [1, 2, 3]),
    (b"*2\r\n$-1\r\n*-1\r\n", [None, None]),
    (b"*3\r\n+OK\r\n:7\r\n$0\r\n\r\n", ["OK", 7, b""]),
    # Nested, as EXEC, XRANGE and XINFO answer.
    (b"*2\r\n*1\r\n:1\r\n*0\r\n", [[1], []]),
    (b"*1\r\n*1\r\n*1\r\n*0\r\n", [[[[]]]]),
    (
        b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$5\r\nevent\r\n$1\r\ne\r\n*-1\r\n",
        [[b"1-0", [b"event", b"e"]], None],
    ),
    # An error inside an array is a value, like any other element.
    (
        b"*2\r\n+OK\r\n-ERR no such key\r\n",
        ["OK", RespError("ERR no such key")],
    ),
]
# What Redis pushes to a connection in subscriber mode.
PUBSUB = [
    (b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsse:a\r\n:1\r\n", [b"subscribe", b"sse:a", 1]),
    (b"*3\r\n$11\r\nunsubscribe\r\n$5\r\nsse:a\r\n:0\r\n", [b"unsubscribe", b"sse:a", 0]),
    (
        b"*3\r\n$7\r\nmessage\r\n$5\r\nsse:a\r\n$5\r\nhello\r\n",
        [b"message", b"sse:a", b"hello"],
    ),
    (
        b"*3\r\n$7\r\nmessage\r\n$9\r\nsse:news1\r\n$12\r\n1\r\n1000-0\r\nx\r\n",
        [b"message", b"sse:news1", b"1\r\n1000-0\r\nx"],
    ),
    (b"*3\r\n$7\r\nmessage\r\n$5\r\nsse:a\r\n$0\r\n\r\n", [b"message", b"sse:a", b""]),
    (
        b"*4\r\n$8\r\npmessage\r\n$5\r\nsse:*\r\n$5\r\nsse:a\r\n$2\r\nhi\r\n",
        [b"pmessage", b"sse:*", b"sse:a", b"hi"],
    ),
    (b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", [b"pong", b""]),  # PING while subscribed
]
ALL_REPLIES = SIMPLE_STRINGS + ERRORS + INTEGERS + BULK_STRINGS + ARRAYS + PUBSUB


def _ids(table):
    return [repr(data[:24]) for data, _ in table]


@pytest.mark.parametrize("data, expected", SIMPLE_STRINGS, ids=_ids(SIMPLE_STRINGS))
def test_simple_strings_parse_to_str(data, expected):
    """A ``+`` line is one reply: its text, decoded from UTF-8."""
    assert _parse_all(data) == [expected]


@pytest.mark.parametrize("data, expected", ERRORS, ids=_ids(ERRORS))
def test_errors_parse_to_a_resp_error_value(data, expected):
    """A ``-`` line is returned (not raised) as a ``RespError`` carrying the line's text."""
    (reply,) = RespParser().feed(data)
    assert type(reply) is RespError
    assert _plain(reply) == _plain(expected)


def test_an_error_reply_does_not_stop_the_replies_after_it():
    """Replies after an error in the same buffer are still parsed, in order."""
    replies = RespParser().feed(b"+OK\r\n-NOAUTH Authentication required.\r\n:1\r\n")
    assert _plain(replies) == ["OK", ("RespError", "NOAUTH Authentication required."), 1]


@pytest.mark.parametrize("data, expected", INTEGERS, ids=_ids(INTEGERS))
def test_integers_parse_to_int(data, expected):
    """A ``:`` line is one reply: its signed integer."""
    (reply,) = _parse_all(data)
    assert type(reply) is int
    assert reply == expected


@pytest.mark.parametrize("data, expected", BULK_STRINGS, ids=_ids(BULK_STRINGS))
def test_bulk_strings_parse_to_bytes(data, expected):
    """A ``$`` reply is its payload as bytes (whatever it holds); ``$-1`` is None."""
    (reply,) = _parse_all(data)
    assert reply == expected
    assert type(reply) is (type(None) if expected is None else bytes)


@pytest.mark.parametrize("data, expected", ARRAYS + PUBSUB, ids=_ids(ARRAYS + PUBSUB))
def test_arrays_parse_to_lists(data, expected):
    """A ``*`` reply is a list of its elements, nested as sent; ``*-1`` is None."""
    assert _parse_all(data) == [_plain(expected)]


def test_feeding_nothing_returns_nothing():
    """Feeding b"" to a fresh parser returns no reply."""
    assert RespParser().feed(b"") == []


# --- several replies, and replies split across reads ---------------------------

# A burst as a subscriber connection reads it: confirmations, messages, an error.
BURST = [
    (b"*3\r\n$9\r\nsubscribe\r\n$11\r\nsse:control\r\n:1\r\n", [b"subscribe", b"sse:control", 1]),
    (b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsse:a\r\n:2\r\n", [b"subscribe", b"sse:a", 2]),
    (
        b"*3\r\n$7\r\nmessage\r\n$5\r\nsse:a\r\n$8\r\n1\r\n\r\nx\r\n\r\n",
        [b"message", b"sse:a", b"1\r\n\r\nx\r\n"],
    ),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*2\r\n*0\r\n*1\r\n*-1\r\n", [[], [None]]),
    (b"-ERR wrong\r\n", RespError("ERR wrong")),
    (b":42\r\n", 42),
    (b"+PONG\r\n", "PONG"),
    (b"*3\r\n$7\r\nmessage\r\n$5\r\nsse:b\r\n$2\r\nhi\r\n", [b"message", b"sse:b", b"hi"]),
]
BURST_BYTES = b"".join(data for data, _ in BURST)
BURST_REPLIES = _plain([reply for _, reply in BURST])
# The offset just after each reply's last byte.
BURST_ENDS = [sum(len(data) for data, _ in BURST[: index + 1]) for index in range(len(BURST))]


def test_several_replies_in_one_buffer_come_out_in_order():
    """One feed of many replies returns all of them, in the order sent."""
    assert _parse_all(BURST_BYTES) == BURST_REPLIES


@pytest.mark.parametrize("data, expected", ALL_REPLIES, ids=_ids(ALL_REPLIES))
def test_a_reply_split_in_two_at_every_byte_comes_out_once_complete(data, expected):
    """Fed in two pieces, cut anywhere, a reply comes out of the second feed only, unchanged."""
    for cut in range(1, len(data)):
        parser = RespParser()
        assert parser.feed(data[:cut]) == [], f"a reply before its end, cut at {cut}"
        assert _plain(parser.feed(data[cut:])) == [_plain(expected)], f"cut at {cut}"


@pytest.mark.parametrize("data, expected", ALL_REPLIES, ids=_ids(ALL_REPLIES))
def test_a_reply_fed_one_byte_at_a_time_comes_out_with_its_last_byte(data, expected):
    """Fed byte by byte, a reply comes out exactly once, from the feed of its last byte."""
    parser = RespParser()
    outputs = [_plain(parser.feed(data[index : index + 1])) for index in range(len(data))]
    assert outputs == [[]] * (len(data) - 1) + [[_plain(expected)]]


def test_a_burst_split_in_two_at_every_byte_gives_the_same_replies():
    """Cut anywhere, the first feed returns exactly the replies complete by then, the second the rest."""
    for cut in range(len(BURST_BYTES) + 1):
        parser = RespParser()
        complete = sum(1 for end in BURST_ENDS if end <= cut)
        first = _plain(parser.feed(BURST_BYTES[:cut]))
        second = _plain(parser.feed(BURST_BYTES[cut:]))
        assert first == BURST_REPLIES[:complete], f"cut at {cut}"
        assert second == BURST_REPLIES[complete:], f"cut at {cut}"


def test_a_burst_fed_one_byte_at_a_time_gives_each_reply_at_its_last_byte():
    """Fed byte by byte, each reply of a burst comes out alone, from the feed of its last byte."""
    parser = RespParser()
    outputs = {}
    for index in range(len(BURST_BYTES)):
        replies = parser.feed(BURST_BYTES[index : index + 1])
        if replies:
            outputs[index + 1] = _plain(replies)
    assert outputs == {end: [reply] for end, reply in zip(BURST_ENDS, BURST_REPLIES, strict=True)}


def test_a_reply_completed_with_the_start_of_the_next_returns_only_the_first():
    """A feed that ends one reply and starts another returns the first; the rest waits."""
    parser = RespParser()
    assert parser.feed(b"*3\r\n$7\r\nmessage\r\n$5\r\nsse:a") == []
    assert parser.feed(b"\r\n$2\r\nhi\r\n*3\r\n$7\r\nmess") == [[b"message", b"sse:a", b"hi"]]
    assert parser.feed(b"age\r\n$5\r\nsse:b\r\n$0\r\n\r") == []
    assert parser.feed(b"\n") == [[b"message", b"sse:b", b""]]


# --- malformed input ----------------------------------------------------------


# (wire bytes, what the error message must name)
MALFORMED = [
    pytest.param(b"?what\r\n", "Unexpected RESP type byte b'?'", id="unknown type byte"),
    pytest.param(b"\r\n", "Unexpected RESP type byte b'\\r'", id="empty line"),
    pytest.param(b"HTTP/1.1 400 Bad Request\r\n", "b'H'", id="not redis (HTTP)"),
    pytest.param(b"*1\r\n!x\r\n", "b'!'", id="unknown type inside an array"),
    pytest.param(b"$abc\r\n", "abc", id="bulk length not a number"),
    pytest.param(b"*two\r\n", "two", id="array count not a number"),
    pytest.param(b":1.5\r\n", "1.5", id="integer not an integer"),
    pytest.param(b"+\xff\xfe\r\n", "UTF-8", id="simple string not UTF-8"),
    pytest.param(b"$3\r\nfooXY", "CRLF", id="bulk payload not ended by CRLF"),
]


@pytest.mark.parametrize("data, says", MALFORMED)
def test_malformed_input_raises_resp_error_saying_what_was_wrong(data, says):
    """Bytes that are not RESP2 raise ``RespError`` whose message names the offending input."""
    with pytest.raises(RespError) as raised:
        RespParser().feed(data)
    assert says in str(raised.value)


def test_a_protocol_error_after_good_replies_still_raises():
    """Good replies before malformed bytes in one buffer do not hide the error."""
    with pytest.raises(RespError, match=r"Unexpected RESP type byte b'\?' from Redis\."):
        RespParser().feed(b"+OK\r\n:1\r\n?bad\r\n")


# --- commands -------------------------------------------------------------------

COMMANDS = [
    (("PING",), b"*1\r\n$4\r\nPING\r\n"),
    (("SUBSCRIBE", "sse:a"), b"*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nsse:a\r\n"),
    (
        ("SUBSCRIBE", "sse:a", "sse:b"),
        b"*3\r\n$9\r\nSUBSCRIBE\r\n$5\r\nsse:a\r\n$5\r\nsse:b\r\n",
    ),
    (("AUTH", "user", "p w"), b"*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$3\r\np w\r\n"),
    (("UNSUBSCRIBE", "sse:café"), b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$9\r\nsse:caf\xc3\xa9\r\n"),
    (("SUBSCRIBE", b"sse:\xff\r\n"), b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nsse:\xff\r\n\r\n"),
    (("AUTH", ""), b"*2\r\n$4\r\nAUTH\r\n$0\r\n\r\n"),
]


@pytest.mark.parametrize("args, expected", COMMANDS)
def test_encode_command_writes_an_array_of_bulk_strings(args, expected):
    """A command is an array of bulk strings, lengths in UTF-8 bytes; bytes are sent as is."""
    assert encode_command(*args) == expected


@pytest.mark.parametrize("args, expected", COMMANDS)
def test_an_encoded_command_parses_back_to_its_arguments(args, expected):
    """What ``encode_command`` writes, the parser reads back as the arguments' bytes."""
    as_bytes = [arg.encode() if isinstance(arg, str) else arg for arg in args]
    assert RespParser().feed(encode_command(*args)) == [as_bytes]
