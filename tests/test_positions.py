"""Tests of the ``Last-Event-ID`` codec, ``django_sse.core.positions``.

Round trips are property tests over the whole range of Redis stream ids;
decoding is fed arbitrary client input and must neither raise nor hand one
channel's position to another.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_sse.core.positions import (
    channel_tag,
    decode_positions,
    encode_positions,
    format_position,
    parse_position,
)

UINT64 = 2**64 - 1

# Redis stream ids are two unsigned 64-bit integers.
positions = st.tuples(st.integers(0, UINT64), st.integers(0, UINT64))
# What validate_channel accepts: no whitespace or control characters (and no lone surrogates,
# which no request can carry).
channel_names = st.text(
    alphabet=st.characters(exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"]),
    min_size=1,
    max_size=40,
)
channel_positions = st.dictionaries(channel_names, positions, min_size=2, max_size=20)
# What a client can put in a header: any bytes, as a WSGI server decodes them (latin-1),
# and any text.
client_ids = st.one_of(st.text(), st.binary().map(lambda raw: raw.decode("latin-1")))


def _realistic_id(channel_index: int) -> tuple[int, int]:
    """Return a stream id like Redis generates now: 13-digit milliseconds, a small sequence."""
    return (1_732_170_000_000 + 7919 * channel_index, channel_index * 37 % 1000)


# --- single positions --------------------------------------------------------


@given(positions)
def test_a_position_round_trips_through_its_text(position):
    """Every Redis stream id, up to 2**64-1 in both parts, formats and parses back."""
    assert parse_position(format_position(position)) == position


@pytest.mark.parametrize(
    "text",
    ["", "1", "1-", "-1", "1-2-3", " 1-2", "1-2 ", "1.0-2", "+1-2", "0x1-2", "18446744073709551616-0",
     "0-18446744073709551616", "1-2\n", "a-b"],
)  # fmt: skip
def test_parse_position_refuses_what_is_not_a_stream_id(text):
    """Text that is not ``<uint64>-<uint64>`` parses to None."""
    assert parse_position(text) is None


@given(st.text())
def test_parse_position_never_raises(text):
    """Any text parses to None or to a position within the uint64 range."""
    position = parse_position(text)
    assert position is None or (0 <= position[0] <= UINT64 and 0 <= position[1] <= UINT64)


# --- one channel -------------------------------------------------------------


@given(channel_names, positions)
def test_one_channel_id_is_the_bare_stream_id_and_round_trips(channel, position):
    """A one-channel stream's id is ``ms-seq`` (what send_event returned), decoded back to it."""
    encoded = encode_positions({channel: position})

    assert encoded == f"{position[0]}-{position[1]}"
    assert decode_positions(encoded, [channel]) == {channel: position}


# --- several channels --------------------------------------------------------


@given(channel_positions)
def test_several_channel_positions_round_trip(positions_by_channel):
    """Positions of 2 to 20 channels encode into one id that decodes back to each channel's own."""
    encoded = encode_positions(positions_by_channel)

    assert decode_positions(encoded, list(positions_by_channel)) == positions_by_channel


@given(channel_positions, st.randoms())
def test_decoding_does_not_depend_on_the_order_of_channels(positions_by_channel, random):
    """The stream may list its channels in another order than the id: positions stay with their channel."""
    encoded = encode_positions(positions_by_channel)
    channels = list(positions_by_channel)
    random.shuffle(channels)

    assert decode_positions(encoded, channels) == positions_by_channel


def test_multi_channel_id_has_the_documented_format():
    """Several channels: ``<tag>:<ms>-<seq>`` per channel, comma-separated, tag = 6 hex digits."""
    encoded = encode_positions({"news": (1732170000000, 0), "chat": (1732170000456, 3)})

    assert sorted(encoded.split(",")) == sorted(
        [f"{channel_tag('news')}:1732170000000-0", f"{channel_tag('chat')}:1732170000456-3"]
    )


def test_tags_are_six_hex_digits_and_stable():
    """A channel's tag is 6 lowercase hex digits, the same every time; different names differ."""
    names = [f"room-{index}" for index in range(50)] + ["a", "é", "😀", "x" * 200]
    tags = [channel_tag(name) for name in names]

    assert all(re.fullmatch(r"[0-9a-f]{6}", tag) for tag in tags)
    assert tags == [channel_tag(name) for name in names]
    assert len(set(tags)) == len(names)


def test_twenty_channels_fit_well_under_a_kilobyte():
    """A stream of 20 channels with realistic ids has an id of under 600 bytes; the worst case fits 1 KiB."""
    channels = [f"user:{10_000 + index}:notifications" for index in range(20)]
    realistic = {channel: _realistic_id(index) for index, channel in enumerate(channels)}
    worst = dict.fromkeys(channels, (UINT64, UINT64))

    assert len(encode_positions(realistic).encode()) < 600
    # BaseSseView ignores a Last-Event-ID over 1024 characters.
    assert len(encode_positions(worst).encode()) <= 1024


def test_channels_whose_tags_collide_keep_their_own_positions():
    """Two channels of one stream with the same 6-hex tag still decode to their own positions."""
    first, second = "room-2133", "room-5615"
    assert channel_tag(first) == channel_tag(second)  # found by search; the premise of this test
    positions_by_channel = {first: (1732170000000, 0), second: (1732170000999, 4)}

    for channels in ([first, second], [second, first]):
        decoded = decode_positions(encode_positions(positions_by_channel), channels)
        assert decoded == positions_by_channel


# --- untrusted input ---------------------------------------------------------


@given(client_ids, st.lists(channel_names, min_size=1, max_size=5, unique=True))
def test_any_client_id_decodes_without_error_to_known_channels_only(last_event_id, channels):
    """Any string a client sends decodes, without raising, to positions of the stream's channels only."""
    decoded = decode_positions(last_event_id, channels)

    assert set(decoded) <= set(channels)
    for ms, seq in decoded.values():
        assert 0 <= ms <= UINT64 and 0 <= seq <= UINT64


@given(channel_positions, st.data())
def test_a_partial_or_reordered_id_gives_only_the_channels_it_names(positions_by_channel, data):
    """Any subset of an id's parts, in any order, decodes to exactly those channels' own positions."""
    channels = list(positions_by_channel)
    named = data.draw(st.lists(st.sampled_from(channels), unique=True))
    parts = {part.split(":")[0]: part for part in encode_positions(positions_by_channel).split(",")}
    if len(parts) < len(channels):
        return  # two of the channels share a tag (tested on its own below)
    partial = ",".join(parts[channel_tag(channel)] for channel in named)

    assert decode_positions(partial, channels) == {c: positions_by_channel[c] for c in named}


@given(channel_positions, channel_positions)
def test_an_id_of_other_channels_gives_no_position(mine, foreign):
    """An id encoded for other channels (another stream's) gives none of this stream's channels a position."""
    foreign = {channel: position for channel, position in foreign.items() if channel not in mine}
    if len(foreign) < 2:
        foreign = {"other-1": (5, 5), "other-2": (6, 6)}
    tags = {channel_tag(channel) for channel in mine}
    if any(channel_tag(channel) in tags for channel in foreign):
        return  # a 24-bit tag collision across streams: 1 in ~16 million per pair

    assert decode_positions(encode_positions(foreign), list(mine)) == {}


@pytest.mark.parametrize(
    "last_event_id",
    ["", "garbage", "1-0,2-0", ":", ",,,", "abcdef:1-0", "1732170000000-0", "x" * 5000,
     "abcdef:" + "9" * 40 + "-0", "٣-٣", "\udcff"],
)  # fmt: skip
def test_malformed_multi_channel_ids_give_no_position(last_event_id):
    """Garbage, a bare one-channel id, unknown tags: a two-channel stream decodes no position."""
    assert decode_positions(last_event_id, ["news", "chat"]) == {}


def test_a_multi_channel_id_gives_a_one_channel_stream_no_position():
    """A one-channel stream refuses a several-channel id rather than guessing which part is its own."""
    encoded = encode_positions({"news": (10, 1), "chat": (20, 2)})

    assert decode_positions(encoded, ["news"]) == {}


def test_empty_or_absent_id_or_no_channels_give_nothing():
    """None, an empty id, or a stream without history channels decode to no position."""
    assert decode_positions(None, ["a", "b"]) == {}
    assert decode_positions("", ["a"]) == {}
    assert decode_positions("1-0", []) == {}
