"""A coverage-guided fuzz target (atheris) for the ``Last-Event-ID`` decoder.

Run by test_bad_input.py for a fixed number of runs and seed; by hand::

    python tests/fuzz_positions.py -max_total_time=60

Any exception is a crash that atheris reports with the input. Besides not
raising, ``decode_positions`` must name only the stream's channels, give
positions that fit a Redis stream id, and read back what
``encode_positions`` writes.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from django_sse.core.positions import decode_positions, encode_positions

_MAX = 2**64 - 1
_CHANNELS = ["a", "b", "news", "user-1", "\u00e9t\u00e9", "c" * 200]


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    count = provider.ConsumeIntInRange(1, len(_CHANNELS))
    channels = _CHANNELS[:count]
    text = provider.ConsumeUnicodeNoSurrogates(provider.remaining_bytes())

    found = decode_positions(text, channels)

    if not set(found) <= set(channels):
        raise AssertionError(f"{text!r} named channels {set(found) - set(channels)}")
    for ms, seq in found.values():
        if not (0 <= ms <= _MAX and 0 <= seq <= _MAX):
            raise AssertionError(f"{text!r} gave the position {ms}-{seq}")
    if found and (len(channels) == 1 or len(found) > 1):
        again = decode_positions(encode_positions(found), channels)
        if again != found:
            raise AssertionError(f"{text!r}: {found} encoded and decoded is {again}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
