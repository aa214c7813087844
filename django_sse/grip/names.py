"""The proxy's channel names for the library's channels.

A library channel may hold any printable character; a GRIP header cannot
(``,`` and ``;`` separate its entries), and header parsers may fold case. A
name outside a safe set (lowercase letters, digits and ``_.-``) is replaced
by a hash of it. Each channel has two proxy channels, one per
shape of the ``id:`` a stream writes (see ``core.positions``): streams
with one channel of history hold ``sse.1.<name>`` and get the event's own
id; streams with several hold ``sse.n.<name>`` and get ``<tag>:<id>``.
``send_event`` publishes to both.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[a-z0-9_.\-]{1,100}")


def _part(text: str) -> str:
    if _SAFE.fullmatch(text):
        return text
    return "~" + hashlib.blake2s(text.encode("utf-8"), digest_size=16).hexdigest()


def stream_channel(channel: str, several: bool) -> str:
    """Return the proxy channel that streams of one channel (or of ``several``) hold for ``channel``."""
    return f"sse.{'n' if several else '1'}.{_part(channel)}"


def user_channel(user_key: str) -> str:
    """Return the proxy channel every GRIP stream of the user ``user_key`` also holds.

    Revocation closes the user's streams through it (see ``publisher``).
    """
    return "sse.user." + hashlib.blake2s(user_key.encode("utf-8"), digest_size=16).hexdigest()
