"""The pub/sub connection's own RESP2 parser reads bytes as hiredis, the parser redis-py uses, does.

``django_sse/brokers/resp.py`` parses what Redis pushes on the one pub/sub
connection of a process. Valid replies, fed whole or split anywhere, must
come out exactly as ``hiredis.Reader`` gives them; for mutated bytes (a
fuzzer with a fixed seed), whatever our parser accepts hiredis accepts too,
with the same replies: ours may only be stricter (it then drops the
connection, which the hub reconnects).
"""

from __future__ import annotations

import hiredis
from hypothesis import given, settings
from hypothesis import strategies as st

from django_sse.brokers.redis.resp import RespError, RespParser, RespProtocolError

FIXED = settings(max_examples=400, deadline=None, derandomize=True, database=None)

_simple_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20
)  # no CR/LF: a simple string is one line
_leaves = st.one_of(
    st.tuples(st.just("+"), _simple_text),
    st.tuples(st.just("-"), _simple_text.filter(bool)),
    st.tuples(st.just(":"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("$"), st.binary(max_size=40)),
    st.just(("$", None)),
    st.just(("*", None)),
)
replies = st.recursive(
    _leaves, lambda inner: st.tuples(st.just("*"), st.lists(inner, max_size=5)), max_leaves=12
)


def encode(reply) -> bytes:
    kind, value = reply
    if value is None:
        return b"%s-1\r\n" % kind.encode()
    if kind in "+-":
        return kind.encode() + value.encode() + b"\r\n"
    if kind == ":":
        return b":%d\r\n" % value
    if kind == "$":
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


def ours(data: bytes, cuts: list[int]) -> tuple[list, bool]:
    """Return the replies our parser gives for ``data`` fed in pieces, and whether it refused."""
    parser = RespParser()
    out: list = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            out.extend(normalise(reply) for reply in parser.feed(data[start:cut]))
            start = cut
    except RespProtocolError:
        return out, True
    return out, False


def theirs(data: bytes) -> tuple[list, bool]:
    """Return hiredis's replies for ``data``, and whether it refused."""
    reader = hiredis.Reader()
    reader.feed(data)
    out: list = []
    try:
        while (reply := reader.gets()) is not False:
            out.append(normalise(reply))
    except hiredis.ProtocolError:
        return out, True
    return out, False


def normalise(reply):
    """One shape for both parsers: bytes for strings, ("error", text) for error replies."""
    if isinstance(reply, (RespError, hiredis.ReplyError)):
        return ("error", str(reply))
    if isinstance(reply, str):
        return reply.encode()
    if isinstance(reply, list):
        return [normalise(item) for item in reply]
    return reply


@FIXED
@given(st.lists(replies, min_size=1, max_size=4), st.lists(st.integers(0, 400), max_size=3))
def test_valid_replies_come_out_as_hiredis_gives_them(batch, cuts):
    data = b"".join(encode(reply) for reply in batch)
    cuts = [cut for cut in cuts if cut <= len(data)]

    assert ours(data, cuts) == theirs(data)
    assert ours(data, cuts)[0] == theirs(data)[0] and len(theirs(data)[0]) == len(batch)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(encode(draw(replies)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from(b"\r\n$*:+-_ 0123456789aZ\x00\xff"))
        if draw(st.booleans()) and at < len(data):
            data[at] = byte
        else:
            data[at:at] = bytes([byte])
    return bytes(data)


@FIXED
@given(mutated())
def test_what_our_parser_accepts_hiredis_reads_the_same(data):
    """Never a reply hiredis would not give: accepted bytes agree, refusals may only be ours."""
    got, refused = ours(data, [])
    expected, hiredis_refused = theirs(data)

    if not refused:
        assert got == expected  # hiredis may refuse a tail ours still waits on
    else:
        assert got == expected[: len(got)]


def test_numbers_are_plain_digits_as_hiredis_requires():
    """Python's int() takes "1_0", " 12" and "+3"; RESP does not."""
    for line in (b":1_0\r\n", b": 12\r\n", b"$1_0\r\n0123456789\r\n", b"*+1\r\n:1\r\n"):
        assert ours(line, [])[1] is True, line
