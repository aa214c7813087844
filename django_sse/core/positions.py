"""Positions in a channel's history, and the ``Last-Event-ID`` string that carries them.

A position is a Redis stream id ``<milliseconds>-<sequence>``, kept as a
tuple of two ints so that it compares in order. ``0-0`` is the position
before the first event.

The SSE ``id:`` of a stream:

* one channel with history: the event's own id, e.g. ``1732170000000-0``
  (what ``send_event`` returned);
* several: one ``<tag>:<id>`` per channel, comma-separated, where ``<tag>``
  is 6 hex digits of a hash of the channel name, e.g.
  ``3f9a1c:1732170000000-0,b07e44:1732170000456-3`` (about 23 bytes per
  channel).

Decoding never trusts the client: what does not parse, or names no channel of
this stream, is simply absent from the result, and the stream treats those
channels as having lost their position.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

Position = tuple[int, int]
ZERO: Position = (0, 0)

_POSITION = re.compile(r"(\d{1,20})-(\d{1,20})")
_MAX = 2**64 - 1


def parse_position(text: str) -> Position | None:
    """Return the position written as ``ms-seq``, or None when ``text`` is not one."""
    match = _POSITION.fullmatch(text)
    if match is None:
        return None
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > _MAX or seq > _MAX:
        return None
    return ms, seq


def format_position(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def channel_tag(channel: str) -> str:
    """Return the short tag that names ``channel`` inside a multi-channel id."""
    return hashlib.blake2s(channel.encode("utf-8"), digest_size=3).hexdigest()


def encode_positions(positions: Mapping[str, Position]) -> str:
    """Return the SSE id for these per-channel positions (a bare id for one channel).

    Entries are written in channel-name order, so that channels whose tags
    collide can still be told apart by their order when decoding.
    """
    if len(positions) == 1:
        (position,) = positions.values()
        return format_position(position)
    return ",".join(
        f"{channel_tag(channel)}:{format_position(positions[channel])}"
        for channel in sorted(positions)
    )


_TAGGED = re.compile(r"[0-9a-f]{6}:\d{1,20}-\d{1,20}(?:,[0-9a-f]{6}:\d{1,20}-\d{1,20})*")


def well_formed(last_event_id: str | None, channels: int) -> bool:
    """Whether ``last_event_id`` has the form of the ids of a stream over ``channels`` channels.

    A bare position for one channel, ``<tag>:<position>,...`` for several: what
    tells an id from another server or library ("malformed") from a position
    this history cannot honour.
    """
    if not last_event_id:
        return False
    if channels == 1:
        return parse_position(last_event_id) is not None
    return _TAGGED.fullmatch(last_event_id) is not None


def decode_positions(last_event_id: str | None, channels: Iterable[str]) -> dict[str, Position]:
    """Return the positions that ``last_event_id`` gives for ``channels``; others are absent."""
    channels = list(channels)
    if not last_event_id or not channels:
        return {}
    if len(channels) == 1:
        position = parse_position(last_event_id)
        return {} if position is None else {channels[0]: position}
    # Each tag's entries, in order; normally one channel per tag.
    channels_by_tag: dict[str, list[str]] = {}
    for channel in sorted(channels):
        channels_by_tag.setdefault(channel_tag(channel), []).append(channel)
    entries_by_tag: dict[str, list[Position | None]] = {}
    for part in last_event_id.split(",", len(channels)):
        tag, _, text = part.partition(":")
        if tag in channels_by_tag:
            entries_by_tag.setdefault(tag, []).append(parse_position(text))
    found: dict[str, Position] = {}
    for tag, entries in entries_by_tag.items():
        named = channels_by_tag[tag]
        if len(entries) != len(named):
            continue  # cannot tell which entry is whose: those channels lose their position
        for channel, position in zip(named, entries, strict=True):
            if position is not None:
                found[channel] = position
    return found
