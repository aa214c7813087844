"""Channel names: what the library accepts, checked before any subscribe or publish."""

from __future__ import annotations

import re

from ..conf import sse_settings
from ..exceptions import InvalidChannel

# Whitespace and control characters (C0, DEL, C1) and the Unicode separators.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")


def validate_channel(channel: object) -> str:
    """Return ``channel`` if it is a valid name, else raise ``InvalidChannel``."""
    if not isinstance(channel, str):
        raise InvalidChannel(f"A channel name must be a str, not {type(channel).__name__}.")
    if not channel:
        raise InvalidChannel("A channel name must not be empty.")
    limit = sse_settings.SSE_MAX_CHANNEL_LENGTH
    if len(channel) > limit:
        raise InvalidChannel(
            f"The channel name is {len(channel)} characters long; SSE_MAX_CHANNEL_LENGTH allows {limit}."
        )
    if "\ufffd" in channel:
        # What decoding replaces invalid UTF-8 with (a query string, a header): such a
        # name is ambiguous, since different bytes would all name the same channel.
        raise InvalidChannel(
            f"The channel name {channel[:40]!r} contains U+FFFD, the mark of bytes that "
            "are not valid UTF-8."
        )
    match = _FORBIDDEN.search(channel)
    if match:
        raise InvalidChannel(
            f"The channel name {channel[:40]!r} contains whitespace or a control character "
            f"({match.group()!r})."
        )
    return channel
